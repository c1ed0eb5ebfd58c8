-- filedock catalog, version 3: workflow tasks, webhook deliveries (an outbox that survives a
-- restart), named leases (one sweeper at a time across instances), and an index for the
-- retention sweep.
CREATE TABLE tasks (
    id          TEXT PRIMARY KEY,
    project     TEXT NOT NULL,
    workspace   TEXT,
    workflow    TEXT NOT NULL,
    parameters  TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed')),
    created_by  TEXT,
    runner      TEXT,
    attempts    BIGINT NOT NULL,
    lease_until BIGINT,
    outputs     TEXT NOT NULL,
    error       TEXT,
    created_at  BIGINT NOT NULL,
    started_at  BIGINT,
    finished_at BIGINT
);
CREATE INDEX tasks_queue ON tasks (project, status, created_at, id);
CREATE INDEX tasks_leases ON tasks (status, lease_until);

CREATE TABLE deliveries (
    id           TEXT PRIMARY KEY,
    event_id     TEXT NOT NULL,
    project      TEXT NOT NULL,
    webhook      TEXT NOT NULL,
    event        TEXT NOT NULL,
    payload      TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts     BIGINT NOT NULL,
    next_at      BIGINT NOT NULL,
    last_error   TEXT,
    created_at   BIGINT NOT NULL,
    delivered_at BIGINT
);
CREATE INDEX deliveries_due ON deliveries (status, next_at);
CREATE INDEX deliveries_by_project ON deliveries (project, id);

CREATE TABLE leases (
    name   TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    until  BIGINT NOT NULL
);

CREATE INDEX files_expiry ON files (expires_at) WHERE status <> 'deleted';
