-- PostgreSQL's 0005 announces credential changes and queued tasks to listening instances.
-- SQLite has no such channel (one machine: credential changes are seen through the keys
-- file, runs on this instance wake its claims directly), so this version changes nothing.
SELECT 1;
