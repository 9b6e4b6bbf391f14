-- weir projections, version 1.
--
-- Portable SQL: this one file runs unchanged on SQLite and Postgres. Rules kept here:
-- ids and names are TEXT, sequences, counts, sizes and times are BIGINT (times are
-- microseconds since the Unix epoch, UTC), flags are BIGINT 0/1, JSON is TEXT, no
-- vendor types, no defaults that call functions, no foreign keys (rows are written in
-- log order by one projector, and a replay fills tables in bulk).
--
-- Every table name ends in the table-set marker (an `s` in braces): it becomes nothing
-- for the live tables and `_new` for the shadow set a replay builds before swapping it
-- in (see `schema.rs`).

-- Where the projector is: the last stream sequence applied to the tables of this set.
-- Written in the same transaction as the rows it accounts for.
CREATE TABLE projection_checkpoint{s} (
    name TEXT NOT NULL PRIMARY KEY,
    seq BIGINT NOT NULL,
    stored_at BIGINT NOT NULL
);
INSERT INTO projection_checkpoint{s} (name, seq, stored_at) VALUES ('main', 0, 0);

-- Catalog: one row per dataset, showing its current version.
CREATE TABLE datasets{s} (
    id TEXT NOT NULL PRIMARY KEY,
    owner TEXT NOT NULL,
    label TEXT,
    table_name TEXT NOT NULL,
    current_version BIGINT NOT NULL,
    schema_json TEXT NOT NULL,
    row_count BIGINT NOT NULL,
    size_bytes BIGINT NOT NULL,
    parquet_key TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    deleted_at BIGINT,
    last_seq BIGINT NOT NULL
);
CREATE INDEX datasets{s}_owner_idx ON datasets{s} (owner, table_name);

-- Catalog: every registered version of every dataset.
CREATE TABLE dataset_versions{s} (
    dataset_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    parent_version BIGINT,
    schema_json TEXT NOT NULL,
    statistics_json TEXT NOT NULL,
    upload_id TEXT NOT NULL,
    parquet_key TEXT NOT NULL,
    size_bytes BIGINT NOT NULL,
    row_count BIGINT NOT NULL,
    registered_at BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    PRIMARY KEY (dataset_id, version)
);

-- Upload status: one row per upload, from UploadReceived to its terminal event.
CREATE TABLE uploads{s} (
    id TEXT NOT NULL PRIMARY KEY,
    owner TEXT NOT NULL,
    filename TEXT NOT NULL,
    label TEXT,
    requested_table TEXT,
    content_type TEXT,
    declared_format TEXT,
    size_bytes BIGINT NOT NULL,
    part_count BIGINT NOT NULL,
    -- The dataset named by the producer when the upload is a new version of it.
    target_dataset TEXT,
    -- received | combined | inferred | registered | failed | aborted
    status TEXT NOT NULL,
    dataset_id TEXT,
    version BIGINT,
    table_name TEXT,
    blob_key TEXT,
    deduplicated BIGINT,
    format TEXT,
    compression TEXT,
    problem_count BIGINT,
    failed_step TEXT,
    failure_reason TEXT,
    failure_attempts BIGINT,
    failure_retryable BIGINT,
    received_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    finished_at BIGINT,
    last_seq BIGINT NOT NULL
);
CREATE INDEX uploads{s}_owner_idx ON uploads{s} (owner, received_at);
CREATE INDEX uploads{s}_dataset_idx ON uploads{s} (dataset_id);

-- Upload status: the step log. A step starts when its input event is stored and ends
-- with its output event (or the upload's Failed/UploadAborted).
CREATE TABLE upload_steps{s} (
    upload_id TEXT NOT NULL,
    step TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    ended_at BIGINT,
    -- NULL while running; ok | failed | aborted
    outcome TEXT,
    start_seq BIGINT NOT NULL,
    end_seq BIGINT,
    PRIMARY KEY (upload_id, step)
);

-- Notification feed per owner. The id is the event id of the event that raised it;
-- read state changes only by applying a read event.
CREATE TABLE notifications{s} (
    id TEXT NOT NULL PRIMARY KEY,
    owner TEXT NOT NULL,
    -- dataset_ready | upload_failed
    kind TEXT NOT NULL,
    upload_id TEXT NOT NULL,
    dataset_id TEXT,
    message TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    read_at BIGINT,
    read_seq BIGINT
);
CREATE INDEX notifications{s}_owner_idx ON notifications{s} (owner, seq);

-- Audit: every event, one row each, with the ids it touches.
CREATE TABLE audit{s} (
    seq BIGINT NOT NULL PRIMARY KEY,
    event_id TEXT NOT NULL,
    stored_at BIGINT NOT NULL,
    occurred_at BIGINT NOT NULL,
    kind TEXT NOT NULL,
    actor TEXT NOT NULL,
    causation_id TEXT,
    correlation_id TEXT NOT NULL,
    aggregate TEXT NOT NULL,
    dataset_id TEXT,
    summary TEXT NOT NULL
);
CREATE INDEX audit{s}_correlation_idx ON audit{s} (correlation_id, seq);
CREATE INDEX audit{s}_dataset_idx ON audit{s} (dataset_id, seq);

-- Table names currently claimed, per owner.
CREATE TABLE table_names{s} (
    owner TEXT NOT NULL,
    table_name TEXT NOT NULL,
    dataset_id TEXT NOT NULL,
    upload_id TEXT NOT NULL,
    claimed_at BIGINT NOT NULL,
    claim_seq BIGINT NOT NULL,
    PRIMARY KEY (owner, table_name)
);
