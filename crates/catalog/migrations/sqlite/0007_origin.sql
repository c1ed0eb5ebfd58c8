-- Files fetched from a URL record where they came from (`origin`); a file that could not be
-- taken (a fetch that failed, later a scanner's verdict) keeps why (`reason`). The status list
-- grows by 'failed' (and, for quarantine, 'quarantined' and 'rejected'). SQLite cannot change a
-- CHECK in place: the table is made again and its rows copied.
CREATE TABLE files_v7 (
    id            TEXT PRIMARY KEY,
    project       TEXT NOT NULL,
    workspace     TEXT,
    backend       TEXT NOT NULL,
    storage_key   TEXT NOT NULL,
    name          TEXT NOT NULL,
    size          BIGINT,
    declared_type TEXT,
    detected_type TEXT,
    extension     TEXT,
    sha256        TEXT,
    created_by    TEXT,
    agent         TEXT,
    credential_id TEXT,
    class         TEXT NOT NULL CHECK (class IN ('input', 'output', 'asset')),
    status        TEXT NOT NULL CHECK (status IN ('pending', 'ready', 'deleted', 'failed', 'quarantined', 'rejected')),
    policy        TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    completed_at  BIGINT,
    expires_at    BIGINT,
    deleted_at    BIGINT,
    origin        TEXT,
    reason        TEXT
);
INSERT INTO files_v7 (id, project, workspace, backend, storage_key, name, size, declared_type, detected_type,
    extension, sha256, created_by, agent, credential_id, class, status, policy, created_at, completed_at,
    expires_at, deleted_at)
SELECT id, project, workspace, backend, storage_key, name, size, declared_type, detected_type,
    extension, sha256, created_by, agent, credential_id, class, status, policy, created_at, completed_at,
    expires_at, deleted_at FROM files;
DROP TABLE files;
ALTER TABLE files_v7 RENAME TO files;
CREATE UNIQUE INDEX files_live_key ON files (backend, storage_key) WHERE status <> 'deleted';
CREATE INDEX files_listing ON files (project, status, id);
CREATE INDEX files_expiry ON files (expires_at) WHERE status <> 'deleted';
