-- Files fetched from a URL record where they came from (`origin`); a file that could not be
-- taken (a fetch that failed, later a scanner's verdict) keeps why (`reason`). The status list
-- grows by 'failed' (and, for quarantine, 'quarantined' and 'rejected').
ALTER TABLE files DROP CONSTRAINT files_status_check;
ALTER TABLE files ADD CONSTRAINT files_status_check
    CHECK (status IN ('pending', 'ready', 'deleted', 'failed', 'quarantined', 'rejected'));
ALTER TABLE files ADD COLUMN origin TEXT;
ALTER TABLE files ADD COLUMN reason TEXT;
