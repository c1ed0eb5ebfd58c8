-- filedock catalog, version 2: uploads in progress (multipart and tus), with a lease lock that
-- holds across instances.
CREATE TABLE uploads (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL CHECK (kind IN ('multipart', 'tus')),
    project     TEXT NOT NULL,
    workspace   TEXT,
    file_id     TEXT,
    backend     TEXT NOT NULL,
    storage_key TEXT NOT NULL,
    handle      TEXT NOT NULL,
    length      BIGINT,
    part_size   BIGINT NOT NULL,
    upload_offset BIGINT NOT NULL,
    metadata    TEXT,
    concat      TEXT,
    status      TEXT NOT NULL CHECK (status IN ('active', 'completed', 'aborted')),
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    lock_token  TEXT,
    lock_until  BIGINT
);
CREATE INDEX uploads_expiry ON uploads (status, expires_at);
