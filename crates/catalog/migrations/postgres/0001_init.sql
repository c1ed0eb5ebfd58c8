-- filedock catalog, version 1: credentials and files.
CREATE TABLE credentials (
    id          TEXT PRIMARY KEY,
    project     TEXT NOT NULL,
    workspace   TEXT,
    kind        TEXT NOT NULL CHECK (kind IN ('session', 'integration', 'device', 'admin')),
    name        TEXT,
    secret_hash TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);
CREATE INDEX credentials_by_project ON credentials (project, created_at);

CREATE TABLE files (
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
    status        TEXT NOT NULL CHECK (status IN ('pending', 'ready', 'deleted')),
    policy        TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    completed_at  BIGINT,
    expires_at    BIGINT,
    deleted_at    BIGINT
);
-- One live file per storage key; a deleted file's key may be used again.
CREATE UNIQUE INDEX files_live_key ON files (backend, storage_key) WHERE status <> 'deleted';
CREATE INDEX files_listing ON files (project, status, id);
