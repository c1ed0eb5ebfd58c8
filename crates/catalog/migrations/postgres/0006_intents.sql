-- Intents: written before filedock writes an object that has no file row yet (a direct upload:
-- the row is written after the bytes are checked), deleted once the row is. A crash in between
-- leaves a row saying what to clean and whose write it was: the object is deleted once that
-- instance is known to be gone, and an object with neither a file row nor an intent is an orphan
-- whatever its age.
CREATE TABLE intents (
    backend     TEXT NOT NULL,
    storage_key TEXT NOT NULL,
    instance    TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (backend, storage_key)
);
