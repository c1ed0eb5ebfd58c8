-- Deployment-wide values kept in the catalog: the deployment's identity (written once by the
-- first instance; every backend carries the same id in its marker object).
CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
