-- Issue 13: how each upload's rows were read and where every row went: the encoding,
-- the bad-row policy, rows read/registered/rejected, the rejects file and the first bad
-- rows, as one JSON object (see `QualityView`). On the upload from `SchemaInferred`,
-- copied to the version and the dataset when it registers.
ALTER TABLE uploads{s} ADD COLUMN quality_json TEXT;
ALTER TABLE dataset_versions{s} ADD COLUMN quality_json TEXT;
ALTER TABLE datasets{s} ADD COLUMN quality_json TEXT;
-- The dataset's default bad-row policy for new versions (DatasetBadRowsChanged).
ALTER TABLE datasets{s} ADD COLUMN bad_rows_default TEXT;
-- How a version's schema differs from its parent's (DatasetRegistered's schema_diff).
ALTER TABLE dataset_versions{s} ADD COLUMN schema_diff_json TEXT;
-- The dataset's branches (other than main) and tags with their versions, as JSON.
ALTER TABLE datasets{s} ADD COLUMN refs_json TEXT;
