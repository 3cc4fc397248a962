-- The local CA: exactly one row, created on first start.
CREATE TABLE ca (
    id smallint PRIMARY KEY CHECK (id = 1),
    cert_pem text NOT NULL,
    key_pem text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE agents (
    id uuid PRIMARY KEY,
    name text NOT NULL UNIQUE,
    hostname text,
    status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'retired')),
    version text,
    registered_at timestamptz NOT NULL DEFAULT now(),
    last_heartbeat_at timestamptz
);

CREATE TABLE certificates (
    id uuid PRIMARY KEY,
    common_name text NOT NULL,
    sans text[] NOT NULL,
    agent_id uuid NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'issued')),
    certificate_pem text,
    serial text,
    not_before timestamptz,
    not_after timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- pending -> submitted (CSR accepted, certificate issued) -> completed | failed (agent report).
CREATE TABLE jobs (
    id uuid PRIMARY KEY,
    type text NOT NULL DEFAULT 'csr' CHECK (type IN ('csr')),
    certificate_id uuid NOT NULL REFERENCES certificates (id) ON DELETE CASCADE,
    agent_id uuid NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    status text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'submitted', 'completed', 'failed')),
    message text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- At most one pending job per certificate, whichever replica queues it.
CREATE UNIQUE INDEX jobs_one_pending_per_certificate ON jobs (certificate_id) WHERE status = 'pending';
CREATE INDEX jobs_pending_by_agent ON jobs (agent_id) WHERE status = 'pending';
CREATE INDEX certificates_by_agent ON certificates (agent_id);
