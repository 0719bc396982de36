//! The request context policy sees, built from inspection findings and request facts.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use ztai_core::{Finding, Severity};

/// Bounds on tool-call arguments: deeper or larger argument documents are refused rather than
/// partly shown to policy.
pub const MAX_ARGUMENT_DEPTH: usize = 8;
pub const MAX_ARGUMENT_LEAVES: usize = 256;
pub const MAX_ARGUMENT_BYTES: usize = 64 * 1024;

/// Facts about one request that policies may use. Field names match the schema's `RequestContext`.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestContext {
    pub operation: String,
    pub stream: bool,
    pub max_severity: i64,
    pub finding_categories: BTreeSet<String>,
    pub finding_types: BTreeSet<String>,
    pub high_severity_categories: BTreeSet<String>,
    pub risk_score: i64,
    pub estimated_tokens: i64,
    pub on_behalf_of: String,
    pub delegation_chain: BTreeSet<String>,
    pub delegation_depth: i64,
    /// Tool-call arguments flattened to dotted paths (see `with_arguments`).
    pub arguments: BTreeMap<String, String>,
    pub data_classification: String,
    pub client_ip: IpAddr,
    pub network_zone: String,
    pub hour_utc: i64,
    pub weekday_utc: i64,
    pub device_posture: BTreeSet<String>,
    /// The principal's own groups, so policy can intersect them with a document's readers.
    pub principal_groups: BTreeSet<String>,
    /// `kind:id` of the resource's owner (a catalogued document's `owner`); "" when none.
    pub resource_owner: String,
    /// The groups a catalogued document's ACL lets read it (`readers`).
    pub resource_readers: BTreeSet<String>,
    /// Free labels of a catalogued resource (`labels`).
    pub resource_labels: BTreeSet<String>,
    /// What an MCP session has read so far (its taint labels, e.g. `untrusted_content`,
    /// `confidential_data`); empty outside MCP sessions.
    pub session_taint: BTreeSet<String>,
    /// For egress: the port, the HTTP method and path ("" for a `CONNECT` tunnel, whose path is
    /// encrypted), and the address the destination resolved to (the one connected to).
    pub destination_port: i64,
    pub destination_method: String,
    pub destination_path: String,
    pub destination_ip: IpAddr,
}

impl Default for RequestContext {
    fn default() -> Self {
        RequestContext {
            operation: String::new(),
            stream: false,
            max_severity: 0,
            finding_categories: BTreeSet::new(),
            finding_types: BTreeSet::new(),
            high_severity_categories: BTreeSet::new(),
            risk_score: 0,
            estimated_tokens: 0,
            on_behalf_of: String::new(),
            delegation_chain: BTreeSet::new(),
            delegation_depth: 0,
            arguments: BTreeMap::new(),
            data_classification: String::new(),
            client_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            network_zone: "unknown".to_string(),
            hour_utc: 0,
            weekday_utc: 0,
            device_posture: BTreeSet::new(),
            principal_groups: BTreeSet::new(),
            resource_owner: String::new(),
            resource_readers: BTreeSet::new(),
            resource_labels: BTreeSet::new(),
            session_taint: BTreeSet::new(),
            destination_port: 0,
            destination_method: String::new(),
            destination_path: String::new(),
            destination_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        }
    }
}

/// Why tool-call arguments cannot be shown to policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgumentsError {
    #[error("tool-call arguments must be a JSON object, not {0}")]
    NotAnObject(&'static str),
    #[error("tool-call arguments nest deeper than {MAX_ARGUMENT_DEPTH} levels; flatten them")]
    TooDeep,
    #[error("tool-call arguments have more than {MAX_ARGUMENT_LEAVES} values; send fewer")]
    TooMany,
    #[error("tool-call arguments exceed {MAX_ARGUMENT_BYTES} bytes of keys and values")]
    TooLarge,
    #[error(
        "tool-call argument path `{0}` is ambiguous (a key containing `.` collides with a nested key); rename the key"
    )]
    Ambiguous(String),
}

/// Flattens a JSON object into dotted paths. Every leaf becomes one entry; an empty object or
/// array is a leaf with the value `{}` or `[]`, so policy can tell it from an absent key.
pub fn flatten_arguments(
    value: &serde_json::Value,
) -> Result<BTreeMap<String, String>, ArgumentsError> {
    use serde_json::Value;
    fn kind(v: &Value) -> &'static str {
        match v {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Number(_) => "a number",
            Value::String(_) => "a string",
            Value::Array(_) => "an array",
            Value::Object(_) => "an object",
        }
    }
    fn walk(
        path: &str,
        v: &Value,
        depth: usize,
        out: &mut BTreeMap<String, String>,
        bytes: &mut usize,
    ) -> Result<(), ArgumentsError> {
        if depth > MAX_ARGUMENT_DEPTH {
            return Err(ArgumentsError::TooDeep);
        }
        let children: Vec<(String, &Value)> = match v {
            Value::Object(m) if !m.is_empty() => m.iter().map(|(k, v)| (k.clone(), v)).collect(),
            Value::Array(a) if !a.is_empty() => a
                .iter()
                .enumerate()
                .map(|(i, v)| (i.to_string(), v))
                .collect(),
            leaf => {
                let text = match leaf {
                    Value::String(s) => s.clone(),
                    Value::Object(_) => "{}".to_string(),
                    Value::Array(_) => "[]".to_string(),
                    other => other.to_string(),
                };
                *bytes = bytes.saturating_add(path.len() + text.len());
                if *bytes > MAX_ARGUMENT_BYTES {
                    return Err(ArgumentsError::TooLarge);
                }
                if out.len() >= MAX_ARGUMENT_LEAVES {
                    return Err(ArgumentsError::TooMany);
                }
                if out.insert(path.to_string(), text).is_some() {
                    return Err(ArgumentsError::Ambiguous(path.to_string()));
                }
                return Ok(());
            }
        };
        for (key, child) in children {
            let p = if path.is_empty() {
                key
            } else {
                format!("{path}.{key}")
            };
            walk(&p, child, depth + 1, out, bytes)?;
        }
        Ok(())
    }
    if !value.is_object() {
        return Err(ArgumentsError::NotAnObject(kind(value)));
    }
    let mut out = BTreeMap::new();
    let mut bytes = 0usize;
    walk("", value, 0, &mut out, &mut bytes)?;
    Ok(out)
}

impl RequestContext {
    pub fn new(operation: &str) -> Self {
        RequestContext {
            operation: operation.to_string(),
            ..Default::default()
        }
    }

    /// Sets what comes from the principal: its groups, the delegation fields from its chain, and
    /// the device posture its credential asserted.
    pub fn with_principal(mut self, principal: &ztai_core::Principal) -> Self {
        self.device_posture = principal.device_posture.iter().cloned().collect();
        self.principal_groups = principal.groups.iter().cloned().collect();
        self.on_behalf_of = principal
            .on_behalf_of
            .first()
            .map(|p| p.id.clone())
            .unwrap_or_default();
        self.delegation_chain = principal.chain().into_iter().collect();
        self.delegation_depth = principal.on_behalf_of.len() as i64;
        self
    }

    /// Sets the tool-call arguments.
    pub fn with_arguments(mut self, arguments: &serde_json::Value) -> Result<Self, ArgumentsError> {
        self.arguments = flatten_arguments(arguments)?;
        Ok(self)
    }

    /// Sets the clock fields from a Unix time (UTC).
    pub fn at_unix_time(mut self, unix_secs: i64) -> Self {
        let days = unix_secs.div_euclid(86_400);
        self.hour_utc = unix_secs.rem_euclid(86_400) / 3600;
        // 1970-01-01 was a Thursday (weekday 3 counting Monday as 0).
        self.weekday_utc = (days + 3).rem_euclid(7);
        self
    }

    /// Folds findings into the context.
    pub fn with_findings<'a>(mut self, findings: impl IntoIterator<Item = &'a Finding>) -> Self {
        for f in findings {
            self.max_severity = self.max_severity.max(f.severity.rank());
            self.finding_categories
                .insert(f.category.as_str().to_string());
            self.finding_types.insert(f.kind.clone());
            if f.severity >= Severity::High {
                self.high_severity_categories
                    .insert(f.category.as_str().to_string());
            }
        }
        self
    }
}
