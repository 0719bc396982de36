//! The outcome of a policy evaluation.
//!
//! `PolicyDecision` is plain data so it can be logged, audited and explained. The typed `Permit` that
//! forwarding requires lives in `ztai-policy`, which alone can build one.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Allow,
    Deny,
}

/// Something the gateway must do because of the policies that permitted a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Obligation {
    /// Redact findings of these categories (all categories when empty) before forwarding / answering.
    Redact { categories: Vec<String> },
    /// Record the full content in the audit log.
    LogFull,
    /// Hold the request for a human approver in `group`.
    Approval { group: String, timeout_secs: u64 },
}

impl Obligation {
    /// A short label for audit records and policy tests: `redact:secret`, `log_full`,
    /// `approval:admins`.
    pub fn label(&self) -> String {
        match self {
            Obligation::Redact { categories } if categories.is_empty() => "redact".into(),
            Obligation::Redact { categories } => format!("redact:{}", categories.join(",")),
            Obligation::LogFull => "log_full".into(),
            Obligation::Approval { group, .. } => format!("approval:{group}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyDecision {
    pub decision: Decision,
    /// Ids of the policies that determined the decision (the permits for Allow, the forbids for an
    /// explicit Deny; empty for a default deny).
    pub policies: Vec<String>,
    /// Human-readable reasons taken from the determining policies' `@reason` annotations.
    pub reasons: Vec<String>,
    pub obligations: Vec<Obligation>,
    /// Evaluation errors (a policy that errored is skipped by Cedar; we surface it).
    pub errors: Vec<String>,
}

impl PolicyDecision {
    pub fn is_allow(&self) -> bool {
        self.decision == Decision::Allow
    }

    /// One line explaining a denial, suitable for an error message to the caller.
    pub fn denial_message(&self) -> String {
        if let Some(r) = self.reasons.first() {
            return r.clone();
        }
        if self.policies.is_empty() {
            "no policy permits this request (default deny)".to_string()
        } else {
            format!("forbidden by policy {}", self.policies.join(", "))
        }
    }
}
