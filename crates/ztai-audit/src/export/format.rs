//! What a SIEM receives: one audit record rendered as an OCSF event, a CEF line or our own JSON,
//! and the transport envelopes around it (RFC 5424 syslog, Splunk HEC).
//!
//! Pure functions of the stored record and its sequence number, so the same record always renders
//! the same bytes: a receiver that sees a record twice (delivery is at least once) can drop the
//! copy by `metadata.uid`/`externalId`/the `seq` structured-data parameter.
//!
//! OCSF mapping (schema 1.3): credential issuance becomes an *Authorize Session* event (class
//! 3003: the privileges a new credential carries); every other decision an *API Activity* event
//! (class 6003) whose `actor.authorizations` carry the decision and the Cedar policies behind it.
//! ZTAI-specific fields that OCSF has no place for (findings, digests, delegation chain, stage
//! timings) go under `unmapped.ztai`.

use serde_json::{Value, json};
use std::time::UNIX_EPOCH;
use ztai_core::{AuditRecord, CredentialOperation, Decision, Severity};

/// OCSF schema version the events are written against.
pub const OCSF_VERSION: &str = "1.3.0";
use super::ocsf::{PRODUCT, VERSION};
/// RFC 5424 structured-data id. 32473 is the private enterprise number IANA reserves for
/// documentation (RFC 5612); receivers match on the `ztai@` prefix.
pub const SD_ID: &str = "ztai@32473";

/// The event format a sink writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// OCSF 1.3 JSON (API Activity / Authorize Session).
    Ocsf,
    /// ArcSight Common Event Format, one line per record.
    Cef,
    /// The audit record exactly as stored, with its sequence number.
    Json,
}

impl ExportFormat {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "ocsf" => Some(ExportFormat::Ocsf),
            "cef" => Some(ExportFormat::Cef),
            "json" => Some(ExportFormat::Json),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ExportFormat::Ocsf => "ocsf",
            ExportFormat::Cef => "cef",
            ExportFormat::Json => "json",
        }
    }

    /// Whether a rendered event is a JSON document (and can be embedded as one).
    pub fn is_json(self) -> bool {
        !matches!(self, ExportFormat::Cef)
    }
}

/// A record that cannot be rendered: its stored JSON no longer parses or its time is not RFC 3339.
/// `ztai audit verify` names such a row; the exporter skips it and counts it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit record {seq} cannot be exported: {reason}")]
pub struct FormatError {
    pub seq: i64,
    pub reason: String,
}

/// What an exported event describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// An audit record; `seq` is its sequence number.
    Record,
    /// A signed checkpoint; `seq` is its tree size. Sent once the sink has every record it
    /// covers, so the SIEM holds signed tree heads the database's administrators cannot reach
    /// (`ztai audit verify --checkpoint` takes the note).
    Checkpoint,
}

/// One record ready for a transport: a single line of text in the sink's format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedEvent {
    pub kind: EventKind,
    pub seq: i64,
    /// Milliseconds since the Unix epoch of the decision.
    pub time_ms: i64,
    /// RFC 3339 time of the decision, as recorded.
    pub time: String,
    pub instance: String,
    /// Syslog severity (RFC 5424, 0–7) for this record.
    pub syslog_severity: u8,
    /// OCSF class name of the event, for receivers that route by source type.
    pub class: &'static str,
    /// The event: one line, no line breaks.
    pub text: String,
}

/// Renders the stored record `record_json` (audit sequence `seq`) in `format`.
pub fn render(
    format: ExportFormat,
    seq: i64,
    record_json: &str,
) -> Result<RenderedEvent, FormatError> {
    let fail = |reason: String| FormatError { seq, reason };
    let record: AuditRecord = serde_json::from_str(record_json)
        .map_err(|e| fail(format!("stored JSON is not an audit record ({e})")))?;
    let time_ms = epoch_ms(&record.time)
        .ok_or_else(|| fail(format!("time `{}` is not RFC 3339", record.time)))?;
    let class = if is_credential_issue(&record) {
        "authorize_session"
    } else {
        "api_activity"
    };
    let text = match format {
        ExportFormat::Ocsf => ocsf(seq, time_ms, &record)
            .map_err(|e| fail(format!("cannot encode the OCSF event ({e})")))?,
        ExportFormat::Cef => cef(seq, time_ms, &record),
        ExportFormat::Json => {
            // The gateway writes compact JSON; a line break here means the row was written by
            // something else, and passing it on would split the event in a line-framed stream.
            if record_json.trim().contains(['\n', '\r']) {
                return Err(fail(
                    "stored JSON is not in the compact form the gateway writes (it spans lines); run `ztai audit verify`".into(),
                ));
            }
            // The stored JSON verbatim (it is what the Merkle leaf commits to), wrapped with its place.
            let mut line = String::with_capacity(record_json.len() + 24);
            line.push_str("{\"seq\":");
            line.push_str(&seq.to_string());
            line.push_str(",\"record\":");
            line.push_str(record_json.trim());
            line.push('}');
            line
        }
    };
    Ok(RenderedEvent {
        kind: EventKind::Record,
        seq,
        time_ms,
        time: record.time.clone(),
        instance: record.instance.clone(),
        syslog_severity: syslog_severity(&record),
        class,
        text,
    })
}

fn epoch_ms(time: &str) -> Option<i64> {
    let t = humantime::parse_rfc3339_weak(time).ok()?;
    let d = t.duration_since(UNIX_EPOCH).ok()?;
    i64::try_from(d.as_millis()).ok()
}

fn is_credential_issue(r: &AuditRecord) -> bool {
    r.decision == Decision::Allow
        && r.credential
            .as_ref()
            .is_some_and(|c| c.operation == CredentialOperation::Issue && !c.subject.is_empty())
}

fn max_severity(r: &AuditRecord) -> Option<Severity> {
    r.findings.iter().map(|f| f.severity).max()
}

/// OCSF `severity_id`: 1 Informational without findings, then Low 2 … Critical 5.
fn ocsf_severity(r: &AuditRecord) -> (u8, &'static str) {
    match max_severity(r) {
        None => (1, "Informational"),
        Some(Severity::Low) => (2, "Low"),
        Some(Severity::Medium) => (3, "Medium"),
        Some(Severity::High) => (4, "High"),
        Some(Severity::Critical) => (5, "Critical"),
    }
}

/// RFC 5424 severity: denials and high findings are warnings, other findings notices.
fn syslog_severity(r: &AuditRecord) -> u8 {
    match (r.decision, max_severity(r)) {
        (Decision::Deny, _) | (_, Some(Severity::High | Severity::Critical)) => 4,
        (_, Some(_)) => 5,
        (_, None) => 6,
    }
}

/// CEF severity 0–10.
fn cef_severity(r: &AuditRecord) -> u8 {
    match (max_severity(r), r.decision) {
        (Some(Severity::Critical), _) => 10,
        (Some(Severity::High), _) => 8,
        (Some(Severity::Medium), _) | (None, Decision::Deny) => 5,
        (Some(Severity::Low), _) => 3,
        (None, Decision::Allow) => 1,
    }
}

/// OCSF API Activity `activity_id` for an action: what the call did to the resource.
fn api_activity(action: &str) -> (u8, &'static str) {
    let verb = action.rsplit("::").next().unwrap_or(action);
    let has = |words: &[&str]| words.iter().any(|w| verb.starts_with(w));
    if has(&["invoke", "create", "sign", "issue", "call"]) {
        (1, "Create")
    } else if has(&["list", "read", "search", "verify", "whoami", "get"]) {
        (2, "Read")
    } else if has(&["reload", "update", "policy_reload", "set"]) {
        (3, "Update")
    } else if has(&["revoke", "delete", "prune"]) {
        (4, "Delete")
    } else {
        (99, "Other")
    }
}

fn decision_word(d: Decision) -> &'static str {
    match d {
        Decision::Allow => "allow",
        Decision::Deny => "deny",
    }
}

fn succeeded(r: &AuditRecord) -> bool {
    r.decision == Decision::Allow && r.status < 400
}

/// `Type::"id"` → (Type, id).
fn split_resource(r: &str) -> (&str, String) {
    match r.split_once("::") {
        Some((t, id)) => (t, id.trim_matches('"').replace("\\\"", "\"")),
        None => ("", r.to_string()),
    }
}

fn ocsf(seq: i64, time_ms: i64, r: &AuditRecord) -> Result<String, serde_json::Error> {
    use super::ocsf::*;
    let (severity_id, severity) = ocsf_severity(r);
    let ok = succeeded(r);
    let decision = capitalised(r.decision);
    let authorizations = if r.policies.is_empty() {
        vec![Authorization {
            decision,
            policy: None,
        }]
    } else {
        r.policies
            .iter()
            .map(|p| Authorization {
                decision,
                policy: Some(Policy { uid: p, name: p }),
            })
            .collect()
    };
    let issued = r.credential.as_ref().filter(|_| is_credential_issue(r));
    let (class_uid, class_name, category_uid, category_name, (activity_id, activity_name)) =
        match issued {
            Some(_) => (
                3003u32,
                "Authorize Session",
                3u8,
                "Identity & Access Management",
                (1u8, "Assign Privileges"),
            ),
            None => (
                6003,
                "API Activity",
                6,
                "Application Activity",
                api_activity(&r.action),
            ),
        };
    let mut resources = Vec::new();
    let mut api = None;
    if issued.is_none() {
        let (rtype, rid) = split_resource(&r.resource);
        resources.push(Resource {
            uid: rid,
            type_name: rtype,
        });
        if let Some(c) = &r.credential {
            resources.push(Resource {
                uid: c.credential_id.clone(),
                type_name: "ApiKey",
            });
        }
        api = Some(Api {
            operation: &r.action,
            service: Service {
                name: "ztai-gateway",
            },
            request: Request { uid: &r.id },
            response: Some(Response { code: r.status }),
        });
    }
    let event = Event {
        class_uid,
        class_name,
        category_uid,
        category_name,
        activity_id,
        activity_name,
        type_uid: u64::from(class_uid) * 100 + u64::from(activity_id),
        type_name: format!("{class_name}: {activity_name}"),
        time: time_ms,
        timezone_offset: 0,
        severity_id,
        severity,
        status_id: if ok { 1 } else { 2 },
        status: if ok { "Success" } else { "Failure" },
        status_code: (r.status > 0).then(|| r.status.to_string()),
        status_detail: &r.reason,
        message: format!(
            "{} {} {}: {}",
            r.principal,
            r.action,
            r.resource,
            decision_word(r.decision)
        ),
        metadata: Metadata {
            version: OCSF_VERSION,
            product: product(),
            uid: &r.id,
            sequence: Some(seq),
            log_name: "audit",
            log_provider: format!("ztai-audit/{}", r.instance),
            original_time: &r.time,
        },
        actor: Actor {
            user: User::of(&r.principal),
            authorizations,
        },
        user: issued.map(|c| User::of(&c.subject)),
        privileges: issued.map(|c| {
            let mut p = vec![format!("credential:{}", c.credential_id)];
            p.extend(c.groups.iter().map(|g| format!("group:{g}")));
            p
        }),
        api,
        resources,
        src_endpoint: Endpoint::caller(&r.client),
        dst_endpoint: Endpoint::gateway(Some(&r.instance)),
        duration: Some(r.timings.total_us / 1000),
        unmapped: Unmapped {
            ztai: ZtaiFields::of(seq, r, decision_word(r.decision)),
        },
    };
    serde_json::to_string(&event)
}

fn capitalised(d: Decision) -> &'static str {
    match d {
        Decision::Allow => "Allow",
        Decision::Deny => "Deny",
    }
}

// ---- CEF ------------------------------------------------------------------------------------

fn cef_header(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '|' => out.push_str("\\|"),
            '\r' | '\n' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

fn cef_value(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '=' => out.push_str("\\="),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out
}

fn cef(seq: i64, time_ms: i64, r: &AuditRecord) -> String {
    let decision = decision_word(r.decision);
    let mut ext: Vec<(&str, String)> = vec![
        ("rt", time_ms.to_string()),
        ("dvchost", r.instance.clone()),
        ("externalId", r.id.clone()),
        ("suser", r.principal.clone()),
        ("act", decision.to_string()),
        (
            "outcome",
            if succeeded(r) { "success" } else { "failure" }.to_string(),
        ),
        ("cat", r.action.clone()),
        ("reason", r.reason.clone()),
    ];
    // Custom fields travel with their label; an empty one is left out together with it.
    let mut labelled = |key: &'static str, label_key: &'static str, label: &str, value: String| {
        if !value.is_empty() {
            ext.push((label_key, label.to_string()));
            ext.push((key, value));
        }
    };
    labelled("cn1", "cn1Label", "seq", seq.to_string());
    labelled("cn2", "cn2Label", "httpStatus", r.status.to_string());
    labelled("cs1", "cs1Label", "resource", r.resource.clone());
    labelled("cs2", "cs2Label", "policies", r.policies.join(","));
    labelled(
        "cs3",
        "cs3Label",
        "findings",
        r.findings
            .iter()
            .map(|f| format!("{}:{}:{}", f.kind, f.severity.as_str(), f.channel.as_str()))
            .collect::<Vec<_>>()
            .join(","),
    );
    labelled("cs4", "cs4Label", "requestDigest", r.request_digest.clone());
    labelled(
        "cs5",
        "cs5Label",
        "responseDigest",
        r.response_digest.clone(),
    );
    labelled("cs6", "cs6Label", "chain", r.chain.join(">"));
    if let Some(c) = &r.credential {
        labelled(
            "flexString1",
            "flexString1Label",
            "credential",
            c.credential_id.clone(),
        );
        ext.push(("duser", c.subject.clone()));
    }
    if let Ok(a) = r.client.parse::<std::net::SocketAddr>() {
        ext.push(("src", a.ip().to_string()));
        ext.push(("spt", a.port().to_string()));
    }
    let mut line = format!(
        "CEF:0|{}|{}|{}|{}|{}|{}|",
        cef_header(PRODUCT),
        cef_header("ZTAI Gateway"),
        cef_header(VERSION),
        cef_header(&format!("{}:{decision}", r.action)),
        cef_header(&format!("{} {decision}", r.action)),
        cef_severity(r),
    );
    let mut first = true;
    for (k, v) in ext.iter().filter(|(_, v)| !v.is_empty()) {
        if !first {
            line.push(' ');
        }
        first = false;
        line.push_str(k);
        line.push('=');
        line.push_str(&cef_value(v));
    }
    line
}

// ---- checkpoints ----------------------------------------------------------------------------

/// Renders a signed checkpoint (tree size, root, time and the C2SP signed note exactly as signed).
pub fn render_checkpoint(
    format: ExportFormat,
    row: &ztai_store::CheckpointRow,
) -> Result<RenderedEvent, FormatError> {
    use base64::Engine;
    let size = row.tree_size;
    let fail = |reason: String| FormatError { seq: size, reason };
    let time_ms = epoch_ms(&row.time)
        .ok_or_else(|| fail(format!("checkpoint time `{}` is not RFC 3339", row.time)))?;
    let origin = row.note.lines().next().unwrap_or_default();
    let instance = origin
        .strip_prefix("ztai-audit/")
        .unwrap_or(origin)
        .to_string();
    let root = base64::engine::general_purpose::STANDARD.encode(&row.root);
    let id = format!("checkpoint-{size}");
    let details = json!({"tree_size": size, "root": root, "time": row.time, "origin": origin, "note": row.note});
    let text = match format {
        ExportFormat::Json => json!({"checkpoint": details}).to_string(),
        ExportFormat::Cef => {
            let ext = [
                ("rt", time_ms.to_string()),
                ("dvchost", instance.clone()),
                ("externalId", id.clone()),
                ("suser", "service:ztai".to_string()),
                ("act", "sign".to_string()),
                ("outcome", "success".to_string()),
                ("cat", "audit_checkpoint".to_string()),
                ("cn3Label", "treeSize".to_string()),
                ("cn3", size.to_string()),
                ("cs1Label", "root".to_string()),
                ("cs1", root.clone()),
                ("cs2Label", "signedNote".to_string()),
                ("cs2", row.note.clone()),
            ];
            let mut line = format!(
                "CEF:0|{}|{}|{}|audit_checkpoint|audit checkpoint|1|",
                cef_header(PRODUCT),
                cef_header("ZTAI Gateway"),
                cef_header(VERSION)
            );
            let body: Vec<String> = ext
                .iter()
                .map(|(k, v)| format!("{k}={}", cef_value(v)))
                .collect();
            line.push_str(&body.join(" "));
            line
        }
        ExportFormat::Ocsf => {
            use super::ocsf::*;
            let event = Event {
                class_uid: 6003,
                class_name: "API Activity",
                category_uid: 6,
                category_name: "Application Activity",
                activity_id: 1,
                activity_name: "Create",
                type_uid: 600301,
                type_name: "API Activity: Create".into(),
                time: time_ms,
                timezone_offset: 0,
                severity_id: 1,
                severity: "Informational",
                status_id: 1,
                status: "Success",
                status_code: None,
                status_detail: "",
                message: format!("audit checkpoint: {size} records, root {root}"),
                metadata: Metadata {
                    version: OCSF_VERSION,
                    product: product(),
                    uid: &id,
                    sequence: None,
                    log_name: "audit",
                    log_provider: origin.to_string(),
                    original_time: &row.time,
                },
                actor: Actor {
                    user: User::of("service:ztai"),
                    authorizations: vec![],
                },
                user: None,
                privileges: None,
                api: Some(Api {
                    operation: "audit_checkpoint",
                    service: Service {
                        name: "ztai-gateway",
                    },
                    request: Request { uid: &id },
                    response: None,
                }),
                resources: vec![Resource {
                    uid: origin.to_string(),
                    type_name: "AuditLog",
                }],
                src_endpoint: Endpoint::gateway(None),
                dst_endpoint: Endpoint::gateway(Some(&instance)),
                duration: None,
                unmapped: Unmapped {
                    ztai: ZtaiFields {
                        checkpoint: Some(CheckpointDetails {
                            tree_size: size,
                            root: root.clone(),
                            time: &row.time,
                            origin,
                            note: &row.note,
                        }),
                        ..ZtaiFields::default()
                    },
                },
            };
            serde_json::to_string(&event)
                .map_err(|e| fail(format!("cannot encode the OCSF event ({e})")))?
        }
    };
    Ok(RenderedEvent {
        kind: EventKind::Checkpoint,
        seq: size,
        time_ms,
        time: row.time.clone(),
        instance,
        syslog_severity: 6,
        class: "api_activity",
        text,
    })
}

// ---- transports -----------------------------------------------------------------------------

/// RFC 5424 header fields are printable US-ASCII without spaces, each with a length limit.
fn syslog_token(text: &str, max: usize) -> String {
    let t: String = text
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect();
    if t.is_empty() { "-".to_string() } else { t }
}

/// RFC 5424 SD-PARAM value escaping: `"`, `\` and `]`.
fn sd_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The event as an RFC 5424 message (without transport framing): `<PRI>1 TIME HOST APP PROCID
/// MSGID [ztai@32473 seq=… id=…] MSG`. `hostname` names this gateway to the receiver.
pub fn syslog_message(
    event: &RenderedEvent,
    facility: u8,
    hostname: &str,
    format: ExportFormat,
) -> String {
    let pri = u16::from(facility.min(23)) * 8 + u16::from(event.syslog_severity.min(7));
    let (msgid, param) = match event.kind {
        EventKind::Record => ("audit", "seq"),
        EventKind::Checkpoint => ("checkpoint", "checkpoint"),
    };
    format!(
        "<{pri}>1 {} {} ztai {} {msgid} [{SD_ID} {param}=\"{}\" instance=\"{}\" format=\"{}\"] {}",
        syslog_token(&event.time, 64),
        syslog_token(hostname, 255),
        std::process::id(),
        event.seq,
        sd_escape(&event.instance),
        format.as_str(),
        event.text,
    )
}

/// Appends `message` with RFC 6587 octet-counting framing (`LEN SP MSG`), which RFC 5425 requires
/// over TLS and which keeps a message with any content in one piece over TCP.
pub fn frame_octet_counted(message: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(message.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(message.as_bytes());
}

/// The event in a Splunk HTTP Event Collector envelope (`/services/collector/event`).
pub fn hec_event(
    event: &RenderedEvent,
    format: ExportFormat,
    host: &str,
    index: Option<&str>,
) -> String {
    let seconds = event.time_ms as f64 / 1000.0;
    let sourcetype = match format {
        ExportFormat::Ocsf => format!("ocsf:{}", event.class),
        ExportFormat::Cef => "cef".to_string(),
        ExportFormat::Json => "ztai:audit".to_string(),
    };
    let mut out = String::with_capacity(event.text.len() + 160);
    out.push_str("{\"time\":");
    out.push_str(&format!("{seconds:.3}"));
    out.push_str(",\"host\":");
    out.push_str(&Value::String(host.to_string()).to_string());
    out.push_str(",\"source\":\"ztai\",\"sourcetype\":");
    out.push_str(&Value::String(sourcetype).to_string());
    if let Some(index) = index {
        out.push_str(",\"index\":");
        out.push_str(&Value::String(index.to_string()).to_string());
    }
    out.push_str(match event.kind {
        EventKind::Record => ",\"fields\":{\"seq\":",
        EventKind::Checkpoint => ",\"fields\":{\"checkpoint\":",
    });
    out.push_str(&event.seq.to_string());
    out.push_str("},\"event\":");
    if format.is_json() {
        out.push_str(&event.text);
    } else {
        out.push_str(&Value::String(event.text.clone()).to_string());
    }
    out.push('}');
    out
}
