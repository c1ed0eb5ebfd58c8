-- The listing's index holds the id bytewise (COLLATE "C"), and the listings order by it so: the
-- primary key, in the database's collation, cannot give that order, so no plan walks it. With
-- statistics stale after a burst of pending files (they still said every file was ready), the
-- generic plan walked the primary key backwards past every pending file (35 ms for the newest
-- page of 10,000 under 230,000 pending; 0.1 ms through this index).
DROP INDEX files_listing;
CREATE INDEX files_listing ON files (project, status, id COLLATE "C");
-- A workspace's listing is a range of its own index (it walked the project's and filtered).
CREATE INDEX files_listing_in ON files (project, workspace, status, id COLLATE "C") WHERE workspace IS NOT NULL;
