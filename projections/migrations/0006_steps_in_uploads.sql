-- Issue 9: an upload's step log lives in its own row. Each upload has at most one run
-- of each of the four steps (upload, combine, infer, register), so the step log is
-- three columns per step of `uploads` instead of a row per step in `upload_steps`: a
-- rebuild writes one row per upload instead of four (and one primary-key entry
-- instead of four), which was a fifth of the rows a replay wrote. The read view
-- `v1_upload_steps` keeps its columns (`read_views.rs`): it lists the steps that
-- started. `<step>_outcome` is NULL while the step runs, then ok | failed | aborted.
ALTER TABLE uploads{s} ADD COLUMN upload_started_at BIGINT;
ALTER TABLE uploads{s} ADD COLUMN upload_ended_at BIGINT;
ALTER TABLE uploads{s} ADD COLUMN upload_outcome TEXT;
ALTER TABLE uploads{s} ADD COLUMN combine_started_at BIGINT;
ALTER TABLE uploads{s} ADD COLUMN combine_ended_at BIGINT;
ALTER TABLE uploads{s} ADD COLUMN combine_outcome TEXT;
ALTER TABLE uploads{s} ADD COLUMN infer_started_at BIGINT;
ALTER TABLE uploads{s} ADD COLUMN infer_ended_at BIGINT;
ALTER TABLE uploads{s} ADD COLUMN infer_outcome TEXT;
ALTER TABLE uploads{s} ADD COLUMN register_started_at BIGINT;
ALTER TABLE uploads{s} ADD COLUMN register_ended_at BIGINT;
ALTER TABLE uploads{s} ADD COLUMN register_outcome TEXT;
-- A database projected before this migration keeps its step log: each step row moves
-- into its upload's columns (the same values a replay writes).
UPDATE uploads{s} SET
    upload_started_at = (SELECT s.started_at FROM upload_steps{s} s WHERE s.upload_id = uploads{s}.id AND s.step = 'upload'),
    upload_ended_at = (SELECT s.ended_at FROM upload_steps{s} s WHERE s.upload_id = uploads{s}.id AND s.step = 'upload'),
    upload_outcome = (SELECT s.outcome FROM upload_steps{s} s WHERE s.upload_id = uploads{s}.id AND s.step = 'upload'),
    combine_started_at = (SELECT s.started_at FROM upload_steps{s} s WHERE s.upload_id = uploads{s}.id AND s.step = 'combine'),
    combine_ended_at = (SELECT s.ended_at FROM upload_steps{s} s WHERE s.upload_id = uploads{s}.id AND s.step = 'combine'),
    combine_outcome = (SELECT s.outcome FROM upload_steps{s} s WHERE s.upload_id = uploads{s}.id AND s.step = 'combine'),
    infer_started_at = (SELECT s.started_at FROM upload_steps{s} s WHERE s.upload_id = uploads{s}.id AND s.step = 'infer'),
    infer_ended_at = (SELECT s.ended_at FROM upload_steps{s} s WHERE s.upload_id = uploads{s}.id AND s.step = 'infer'),
    infer_outcome = (SELECT s.outcome FROM upload_steps{s} s WHERE s.upload_id = uploads{s}.id AND s.step = 'infer'),
    register_started_at = (SELECT s.started_at FROM upload_steps{s} s WHERE s.upload_id = uploads{s}.id AND s.step = 'register'),
    register_ended_at = (SELECT s.ended_at FROM upload_steps{s} s WHERE s.upload_id = uploads{s}.id AND s.step = 'register'),
    register_outcome = (SELECT s.outcome FROM upload_steps{s} s WHERE s.upload_id = uploads{s}.id AND s.step = 'register');
DROP TABLE upload_steps{s};
