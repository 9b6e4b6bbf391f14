-- Issue 10: who may use a dataset besides its owner. One row per live grant
-- (DatasetAccessGranted); a revoke (DatasetAccessRevoked) deletes it. The audit trail
-- keeps every grant and revoke with who did it and when.
CREATE TABLE dataset_grants{s} (
    dataset_id TEXT NOT NULL,
    grantee TEXT NOT NULL,
    -- read | write | admin
    level TEXT NOT NULL,
    granted_by TEXT NOT NULL,
    granted_at BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    PRIMARY KEY (dataset_id, grantee)
);
-- The datasets shared with an owner (`datasets list` as that owner).
CREATE INDEX dataset_grants{s}_grantee_idx ON dataset_grants{s} (grantee);
