-- Issue 10.4/10.5: who references each object in the store, never a counter. One row
-- per (object, holder): an upload (`upload:<id>`: its parts, staging object, blob,
-- Parquet and rejects while it is under way) or a dataset (`dataset:<id>`: the blob,
-- Parquet and rejects of each registered version). A reference is live while its
-- holder needs the object; `ended_at`/`ended_by` say since when and why not
-- (combined, registered, failed, aborted, purged). `deleted_at`/`deleted_seq` record
-- that the object was removed (ObjectDeleted, or a compensation that says so); a
-- reference made after that (the same content uploaded again) starts a new life of
-- the key. The janitor deletes an object only when no reference is live and every
-- reference's grace period, by its `ended_by`, is over.
CREATE TABLE object_refs{s} (
    object_key TEXT NOT NULL,
    holder TEXT NOT NULL,
    -- part | staging | blob | parquet | rejects
    role TEXT NOT NULL,
    owner TEXT NOT NULL,
    -- The upload that made the reference (a dataset's: the version's upload).
    upload_id TEXT NOT NULL,
    dataset_id TEXT,
    live BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    created_seq BIGINT NOT NULL,
    ended_by TEXT,
    ended_at BIGINT,
    ended_seq BIGINT,
    deleted_at BIGINT,
    deleted_seq BIGINT,
    PRIMARY KEY (object_key, holder)
);
-- A batch loads the references of the holders its events name.
CREATE INDEX object_refs{s}_holder_idx ON object_refs{s} (holder);
-- The janitor's work list: references that ended and whose object is not deleted.
CREATE INDEX object_refs{s}_pending_idx ON object_refs{s} (live, deleted_seq, ended_by);
