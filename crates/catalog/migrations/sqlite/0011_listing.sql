-- A workspace's listing is a range of its own index (it walked the project's and filtered).
-- (PostgreSQL's 0011 also rebuilds files_listing bytewise; SQLite's text is bytewise already.)
CREATE INDEX files_listing_in ON files (project, workspace, status, id) WHERE workspace IS NOT NULL;
