
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
    hash BLOB NOT NULL,
    leaf_hash BLOB
);
CREATE INDEX IF NOT EXISTS audit_log_principal ON audit_log(principal, seq);
CREATE TABLE IF NOT EXISTS audit_pruned (
    seq INTEGER PRIMARY KEY,
    leaf_hash BLOB NOT NULL,
    hash BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_prunes (
    id INTEGER PRIMARY KEY,
    first_seq INTEGER NOT NULL,
    last_seq INTEGER NOT NULL,
    time TEXT NOT NULL,
    reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_checkpoints (
    tree_size INTEGER PRIMARY KEY,
    root BLOB NOT NULL,
    time TEXT NOT NULL,
    note TEXT NOT NULL,
    frontier BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS policy_sets (
    version INTEGER PRIMARY KEY,
    digest TEXT NOT NULL,
    source TEXT NOT NULL,
    author TEXT NOT NULL,
    created_at TEXT NOT NULL,
    policies_json TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS export_cursors (
    sink TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS agents (
    agent_id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    purpose TEXT NOT NULL,
    groups_json TEXT NOT NULL,
    ceiling_json TEXT NOT NULL,
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL,
    revoked_at TEXT,
    revoked_by TEXT
);
CREATE TABLE IF NOT EXISTS revocations (
    seq INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    revoked_at TEXT NOT NULL,
    revoked_by TEXT NOT NULL,
    reason TEXT NOT NULL,
    UNIQUE(kind, subject)
);
CREATE TABLE IF NOT EXISTS approvals (
    approval_id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    requester TEXT NOT NULL,
    chain_json TEXT NOT NULL,
    action TEXT NOT NULL,
    resource TEXT NOT NULL,
    approver_group TEXT NOT NULL,
    request_digest TEXT NOT NULL,
    summary_json TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    decided_by TEXT,
    decided_at INTEGER,
    reason TEXT,
    signature TEXT,
    used_at INTEGER,
    approver_key TEXT
);
CREATE INDEX IF NOT EXISTS approvals_by_status ON approvals(status, created_at);
CREATE TABLE IF NOT EXISTS approver_keys (
    key_id TEXT PRIMARY KEY,
    principal TEXT NOT NULL,
    verifier_key TEXT NOT NULL,
    label TEXT NOT NULL,
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL,
    revoked_at TEXT,
    revoked_by TEXT
);
CREATE INDEX IF NOT EXISTS approver_keys_by_principal ON approver_keys(principal);
CREATE TABLE IF NOT EXISTS documents (
    document_id TEXT PRIMARY KEY,
    collections_json TEXT NOT NULL,
    classification TEXT NOT NULL,
    owner TEXT NOT NULL,
    readers_json TEXT NOT NULL,
    labels_json TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    updated_by TEXT NOT NULL
);
