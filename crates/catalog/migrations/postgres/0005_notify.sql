-- Instances listen instead of asking: every change to credentials (a new key, a revocation,
-- from filedock or from anything else that writes the table) and every task that becomes
-- queued (a new run, a lapsed one queued again) is announced on a channel at commit.
-- Credential caches empty on `filedock_credentials`; waiting claims look on `filedock_tasks`.
CREATE FUNCTION filedock_credentials_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('filedock_credentials', '');
    RETURN NULL;
END $$;

CREATE TRIGGER credentials_changed AFTER INSERT OR UPDATE OR DELETE ON credentials
    FOR EACH STATEMENT EXECUTE FUNCTION filedock_credentials_changed();

CREATE FUNCTION filedock_task_queued() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('filedock_tasks', NEW.project);
    RETURN NULL;
END $$;

CREATE TRIGGER task_queued AFTER INSERT OR UPDATE OF status ON tasks
    FOR EACH ROW WHEN (NEW.status = 'queued') EXECUTE FUNCTION filedock_task_queued();
