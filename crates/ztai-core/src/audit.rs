//! The audit record: one per decision, on every path.
//!
//! Findings are summarised (type, severity, span) and content is referenced by digest, so the record
//! can be kept and exported without holding the sensitive values it describes.

use crate::{Channel, Decision, FindingCategory, Severity, Span};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FindingSummary {
    pub kind: String,
    pub category: FindingCategory,
    pub severity: Severity,
    pub span: Span,
    pub channel: Channel,
    pub detector: String,
}

impl From<&crate::Finding> for FindingSummary {
    fn from(f: &crate::Finding) -> Self {
        FindingSummary {
            kind: f.kind.clone(),
            category: f.category,
            severity: f.severity,
            span: f.span,
            channel: f.channel,
            detector: f.detector.to_string(),
        }
    }
}

/// Microseconds spent in each stage of the request path.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageTimings {
    pub authenticate_us: u64,
    pub limit_us: u64,
    pub inspect_input_us: u64,
    pub authorize_us: u64,
    pub upstream_us: u64,
    pub inspect_output_us: u64,
    pub total_us: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Unique id (the request id for data-plane records).
    pub id: String,
    /// RFC 3339 UTC time the decision was made.
    pub time: String,
    /// Which gateway instance decided.
    pub instance: String,
    /// `kind:id` of the principal, or `anonymous` when authentication failed.
    pub principal: String,
    /// Delegation chain, outermost first, ending with the principal.
    pub chain: Vec<String>,
    pub action: String,
    /// `Type::"id"` of the resource.
    pub resource: String,
    pub decision: Decision,
    /// Policies that determined the decision.
    pub policies: Vec<String>,
    /// Why, in a sentence (denials carry the reason returned to the caller).
    pub reason: String,
    /// Obligations carried out.
    pub obligations: Vec<String>,
    pub findings: Vec<FindingSummary>,
    /// HTTP status returned to the caller.
    pub status: u16,
    /// SHA-256 of the request body as received.
    pub request_digest: String,
    /// SHA-256 of the response body as released (after redaction), empty when none was sent.
    pub response_digest: String,
    pub timings: StageTimings,
    /// Content kept only when policy asks for it (`log_full`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<serde_json::Value>,
    /// The caller's socket address (`ip:port`) as the gateway saw it; empty for system events.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub client: String,
    /// The credential this decision issued or revoked, on credential paths only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<CredentialEvent>,
}

/// A credential issued or revoked: which one, to whom, with which groups. Never the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialEvent {
    /// `issue` or `revoke`.
    pub operation: CredentialOperation,
    /// The credential's public identifier (an API key id, a token's revocation id).
    pub credential_id: String,
    /// `kind:id` of the principal the credential speaks for, when known.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subject: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialOperation {
    Issue,
    Revoke,
}
