-- Quarantined files wait for their scanner; the sweeper finds them oldest first.
CREATE INDEX files_quarantined ON files (created_at) WHERE status = 'quarantined';
