-- Client certificates the people CA signed (issue 19), and device logins.

-- One row per certificate signed for a person: listing ("my live
-- certificates"), revocation (checked every time the certificate is mapped
-- to its person) and the audit trail (who, when, from where, how). Rows are
-- kept after expiry for the audit and purged a while later.
CREATE TABLE people_certificates (
    serial        text PRIMARY KEY,
    user_id       text NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    fingerprint   text NOT NULL UNIQUE,
    label         text NOT NULL DEFAULT '',
    source        text NOT NULL,
    issued_at     timestamptz NOT NULL DEFAULT now(),
    not_after     timestamptz NOT NULL,
    revoked_at    timestamptz,
    revoked_by    text NOT NULL DEFAULT '',
    revoked_reason text NOT NULL DEFAULT ''
);
CREATE INDEX people_certificates_by_user ON people_certificates (user_id, issued_at);

-- A device login (`bugless login` on a machine without a browser session):
-- the CLI starts it with its CSR and polls with the secret device code; the
-- person approves the short user code in the web UI, signed in. The
-- certificate is signed at approval and handed out once, to the poller.
CREATE TABLE device_logins (
    device_code_hash text PRIMARY KEY,
    user_code        text NOT NULL UNIQUE,
    csr_pem          text NOT NULL,
    label            text NOT NULL DEFAULT '',
    validity_seconds double precision NOT NULL DEFAULT 0,
    client_address   text NOT NULL DEFAULT '',
    created_at       timestamptz NOT NULL DEFAULT now(),
    expires_at       timestamptz NOT NULL,
    approved_by      text,
    denied           boolean NOT NULL DEFAULT false,
    certificate_pem  text,
    delivered        boolean NOT NULL DEFAULT false
);
CREATE INDEX device_logins_expires_at ON device_logins (expires_at);
