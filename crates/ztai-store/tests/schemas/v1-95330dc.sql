
CREATE TABLE IF NOT EXISTS api_keys (
    key_id TEXT PRIMARY KEY,
    secret_hash BLOB NOT NULL,
    principal_kind TEXT NOT NULL,
    principal_id TEXT NOT NULL,
    groups_json TEXT NOT NULL,
    label TEXT NOT NULL,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);
CREATE TABLE IF NOT EXISTS audit_log (
    seq INTEGER PRIMARY KEY,
    record_id TEXT NOT NULL,
    time TEXT NOT NULL,
    principal TEXT NOT NULL,
    action TEXT NOT NULL,
    decision TEXT NOT NULL,
    record_json TEXT NOT NULL,
    prev_hash BLOB NOT NULL,
    hash BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_log_principal ON audit_log(principal, seq);
CREATE INDEX IF NOT EXISTS audit_log_record_id ON audit_log(record_id);
CREATE TABLE IF NOT EXISTS policy_sets (
    version INTEGER PRIMARY KEY,
    digest TEXT NOT NULL,
    source TEXT NOT NULL,
    author TEXT NOT NULL,
    created_at TEXT NOT NULL,
    policies_json TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
