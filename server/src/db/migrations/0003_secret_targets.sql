-- A certificate may name a Kubernetes Secret its agent keeps it in (docs/api.md, "Secret
-- targets"). The agent holds the key, so the agent writes the Secret and reports how that
-- went; the server only records the report. Two certificates never share a Secret: the
-- second writer would overwrite the first's key pair.
ALTER TABLE certificates
    ADD COLUMN target_namespace text,
    ADD COLUMN target_name text,
    ADD COLUMN target_status text CHECK (target_status IN ('written', 'failed')),
    ADD COLUMN target_serial text,
    ADD COLUMN target_message text,
    ADD COLUMN target_updated_at timestamptz,
    ADD CONSTRAINT certificates_target_complete CHECK ((target_namespace IS NULL) = (target_name IS NULL));
CREATE UNIQUE INDEX certificates_target_unique ON certificates (target_namespace, target_name) WHERE target_namespace IS NOT NULL;
