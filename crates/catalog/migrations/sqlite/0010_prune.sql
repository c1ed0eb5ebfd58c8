-- What the sweeper prunes, found without reading every row: each pruning statement scanned its
-- whole table once a round, holding SQLite's write lock meanwhile (63 ms with 364,000 files:
-- every write of the instance waited), and the tables only grow.
CREATE INDEX files_tombstones ON files (deleted_at) WHERE status = 'deleted';
CREATE INDEX uploads_ended ON uploads (expires_at) WHERE status <> 'active';
CREATE INDEX deliveries_done ON deliveries (created_at) WHERE status <> 'pending';
-- And what expired, in the order the sweeper takes it (expiry, then id): with the expiry alone,
-- files that expire in the same millisecond were sorted whole for every batch of 512.
DROP INDEX files_expiry;
CREATE INDEX files_expiry ON files (expires_at, id) WHERE status <> 'deleted';
DROP INDEX uploads_expiry;
CREATE INDEX uploads_expiry ON uploads (status, expires_at, id);
