//! OCSF 1.3 events as typed structs: the attribute names are checked by the compiler and the
//! event serialises straight to text, borrowing from the record (no intermediate JSON tree, which
//! cost four times as much per event).

use serde::Serialize;
use ztai_core::{AuditRecord, CredentialEvent, FindingSummary, StageTimings};

pub(super) const PRODUCT: &str = "ZTAI";
pub(super) const VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Debug, Serialize)]
pub(super) struct Event<'a> {
    pub class_uid: u32,
    pub class_name: &'static str,
    pub category_uid: u8,
    pub category_name: &'static str,
    pub activity_id: u8,
    pub activity_name: &'static str,
    pub type_uid: u64,
    pub type_name: String,
    pub time: i64,
    pub timezone_offset: i32,
    pub severity_id: u8,
    pub severity: &'static str,
    pub status_id: u8,
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_code: Option<String>,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub status_detail: &'a str,
    pub message: String,
    pub metadata: Metadata<'a>,
    pub actor: Actor<'a>,
    /// Authorize Session: the credential's subject.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<User<'a>>,
    /// Authorize Session: the credential and its groups.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub privileges: Option<Vec<String>>,
    /// API Activity: the operation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api: Option<Api<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<Resource<'a>>,
    pub src_endpoint: Endpoint<'a>,
    pub dst_endpoint: Endpoint<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration: Option<u64>,
    pub unmapped: Unmapped<'a>,
}

#[derive(Debug, Serialize)]
pub(super) struct Metadata<'a> {
    pub version: &'static str,
    pub product: Product,
    pub uid: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sequence: Option<i64>,
    pub log_name: &'static str,
    pub log_provider: String,
    pub original_time: &'a str,
}

#[derive(Debug, Serialize)]
pub(super) struct Product {
    pub name: &'static str,
    pub vendor_name: &'static str,
    pub version: &'static str,
    pub feature: Feature,
}

#[derive(Debug, Serialize)]
pub(super) struct Feature {
    pub name: &'static str,
}

pub(super) fn product() -> Product {
    Product {
        name: PRODUCT,
        vendor_name: PRODUCT,
        version: VERSION,
        feature: Feature { name: "audit" },
    }
}

#[derive(Debug, Serialize)]
pub(super) struct Actor<'a> {
    pub user: User<'a>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub authorizations: Vec<Authorization<'a>>,
}

#[derive(Debug, Serialize)]
pub(super) struct User<'a> {
    pub uid: &'a str,
    pub name: &'a str,
    pub type_id: u8,
    #[serde(rename = "type")]
    pub type_name: &'static str,
}

impl<'a> User<'a> {
    /// A principal (`kind:id`) as an OCSF user: humans are users, services services, agents and
    /// models "other" with their kind named.
    pub fn of(principal: &'a str) -> Self {
        let (kind, id) = principal.split_once(':').unwrap_or(("", principal));
        let (type_id, type_name) = match kind {
            "user" => (1, "User"),
            "service" => (4, "Service"),
            "agent" => (99, "Agent"),
            "model" => (99, "Model"),
            _ => (0, "Unknown"),
        };
        User {
            uid: principal,
            name: id,
            type_id,
            type_name,
        }
    }
}

#[derive(Debug, Serialize)]
pub(super) struct Authorization<'a> {
    pub decision: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<Policy<'a>>,
}

#[derive(Debug, Serialize)]
pub(super) struct Policy<'a> {
    pub uid: &'a str,
    pub name: &'a str,
}

#[derive(Debug, Serialize)]
pub(super) struct Api<'a> {
    pub operation: &'a str,
    pub service: Service,
    pub request: Request<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response: Option<Response>,
}

#[derive(Debug, Serialize)]
pub(super) struct Service {
    pub name: &'static str,
}

#[derive(Debug, Serialize)]
pub(super) struct Request<'a> {
    pub uid: &'a str,
}

#[derive(Debug, Serialize)]
pub(super) struct Response {
    pub code: u16,
}

#[derive(Debug, Serialize)]
pub(super) struct Resource<'a> {
    pub uid: String,
    #[serde(rename = "type")]
    pub type_name: &'a str,
}

/// `ip`+`port` for a caller, or the gateway's own service name for what it did itself.
#[derive(Debug, Serialize)]
pub(super) struct Endpoint<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub svc_name: Option<&'static str>,
}

impl<'a> Endpoint<'a> {
    pub fn caller(client: &str) -> Self {
        match client.parse::<std::net::SocketAddr>() {
            Ok(a) => Endpoint {
                ip: Some(a.ip().to_string()),
                port: Some(a.port()),
                name: None,
                svc_name: None,
            },
            // System events (policy reloads, checkpoints) originate in the gateway itself.
            Err(_) => Endpoint::gateway(None),
        }
    }

    pub fn gateway(instance: Option<&'a str>) -> Self {
        Endpoint {
            ip: None,
            port: None,
            name: instance,
            svc_name: Some("ztai-gateway"),
        }
    }
}

#[derive(Debug, Serialize)]
pub(super) struct Unmapped<'a> {
    pub ztai: ZtaiFields<'a>,
}

/// What OCSF has no attribute for, kept so nothing in the record is lost on the way to a SIEM.
#[derive(Debug, Serialize, Default)]
pub(super) struct ZtaiFields<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chain: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policies: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub obligations: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub findings: Option<&'a [FindingSummary]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_digest: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_digest: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timings: Option<&'a StageTimings>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<&'a CredentialEvent>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<&'a serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<CheckpointDetails<'a>>,
}

#[derive(Debug, Serialize)]
pub(super) struct CheckpointDetails<'a> {
    pub tree_size: i64,
    pub root: String,
    pub time: &'a str,
    pub origin: &'a str,
    pub note: &'a str,
}

impl<'a> ZtaiFields<'a> {
    pub fn of(seq: i64, r: &'a AuditRecord, decision: &'static str) -> Self {
        ZtaiFields {
            seq: Some(seq),
            instance: Some(&r.instance),
            decision: Some(decision),
            chain: Some(&r.chain),
            policies: Some(&r.policies),
            obligations: Some(&r.obligations),
            findings: Some(&r.findings),
            request_digest: Some(&r.request_digest),
            response_digest: Some(&r.response_digest),
            timings: Some(&r.timings),
            credential: r.credential.as_ref(),
            content: r.content.as_ref(),
            checkpoint: None,
        }
    }
}
