-- API tokens per owner, as TokenCreated/TokenRevoked record them: only the hash.
CREATE TABLE tokens{s} (
    owner TEXT NOT NULL,
    token_id TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT,
    seq BIGINT NOT NULL,
    PRIMARY KEY (owner, token_id)
);
CREATE INDEX tokens{s}_sha256_idx ON tokens{s} (sha256);
