-- Per-agent credential (SHA-256 of the secret the agent keeps next to its key). NULL means
-- no credential was issued yet (a row from an older release, or reset by an operator): the
-- next registration of that name claims the row once and receives a credential.
ALTER TABLE agents ADD COLUMN credential_hash bytea CHECK (credential_hash IS NULL OR length(credential_hash) = 32);
