-- Idempotency keys: the first request that used a key in a project, the instance running it, and
-- once it succeeded its answer (status, headers, body), kept until `expires_at` (24 h). A repeat
-- gets the kept answer; the same key with another request is refused; a repeat while the first
-- runs is told to retry. A failed first request leaves no record: the key may be used again.
CREATE TABLE idempotency (
    project     TEXT NOT NULL,
    idem_key    TEXT NOT NULL,
    request     TEXT NOT NULL,
    body_sha256 TEXT,
    instance    TEXT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('running', 'done')),
    status      BIGINT,
    headers     TEXT,
    body        TEXT,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    PRIMARY KEY (project, idem_key)
);
CREATE INDEX idempotency_expiry ON idempotency (expires_at);
