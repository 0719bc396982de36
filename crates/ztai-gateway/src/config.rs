//! Gateway configuration: one TOML file, validated whole at start.
//!
//! Every error names the key and what is wrong with it. Upstream credentials are never read from
//! the file's text: the file names an environment variable or a file that holds them, so the
//! configuration can be committed and shared without leaking a key.

pub mod mcp;

use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use ztai_core::{FindingCategory, PrincipalKind, Severity};

/// A configuration problem, naming the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("config error at `{key}`: {message}")]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

fn err(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.into(),
        message: message.into(),
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    storage: RawStorage,
    #[serde(default)]
    policy: RawPolicy,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    inspect: RawInspect,
    #[serde(default)]
    audit: RawAudit,
    #[serde(default)]
    identity: RawIdentity,
    #[serde(default)]
    approvals: RawApprovals,
    #[serde(default)]
    network_zones: Vec<RawNetworkZone>,
    #[serde(default)]
    tools: Vec<RawCatalogueEntry>,
    #[serde(default)]
    documents: Vec<RawCatalogueEntry>,
    #[serde(default)]
    destinations: Vec<RawCatalogueEntry>,
    #[serde(default)]
    upstreams: Vec<RawUpstream>,
    #[serde(default)]
    models: Vec<RawModel>,
    #[serde(default)]
    mcp: mcp::RawMcp,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<String>,
    admin_listen: Option<String>,
    egress_listen: Option<String>,
    instance: Option<String>,
    max_body_bytes: Option<usize>,
    max_header_bytes: Option<usize>,
    header_read_timeout_ms: Option<u64>,
    body_read_timeout_ms: Option<u64>,
    tls: Option<RawServerTls>,
}

/// `[server.tls]`: the data plane terminates TLS, optionally verifying client certificates.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawServerTls {
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    client_ca_file: Option<PathBuf>,
    require_client_cert: Option<bool>,
}

/// How the data plane terminates TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTlsConfig {
    /// PEM certificate chain of the gateway.
    pub cert_file: PathBuf,
    /// PEM private key of the gateway.
    pub key_file: PathBuf,
    /// PEM trust bundle client certificates must chain to; none means no client certificates.
    pub client_ca_file: Option<PathBuf>,
    /// Refuse connections without a client certificate (otherwise other credentials may be used).
    pub require_client_cert: bool,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawStorage {
    data_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    dir: Option<PathBuf>,
    reload_interval_ms: Option<u64>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    requests_per_minute: Option<u32>,
    request_burst: Option<u32>,
    tokens_per_minute: Option<u32>,
    failed_auth_per_minute: Option<u32>,
    failed_auth_burst: Option<u32>,
    failed_auth_summary_secs: Option<u64>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawInspect {
    redact_output: Option<Vec<String>>,
    output_min_severity: Option<String>,
    block_output: Option<Vec<String>>,
    stream_window_bytes: Option<usize>,
    #[serde(default)]
    dictionaries: Vec<RawDictionary>,
    link_allowlist: Option<Vec<String>>,
    canary: Option<bool>,
    redaction: Option<String>,
    redaction_session_ttl_secs: Option<u64>,
    redaction_max_sessions: Option<usize>,
    #[serde(default)]
    semantic: RawSemantic,
}

/// `[inspect.semantic]`: the second, semantic tier.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSemantic {
    mode: Option<String>,
    dir: Option<PathBuf>,
    band: Option<f32>,
}

/// `[[inspect.dictionaries]]`: a custom term list, inline or in a file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDictionary {
    name: String,
    severity: Option<String>,
    terms: Option<Vec<String>>,
    file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    pseudonymise: Option<Vec<String>>,
    checkpoint_every: Option<u64>,
    checkpoint_interval_ms: Option<u64>,
    #[serde(default)]
    export: Vec<RawExport>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawIdentity {
    #[serde(default)]
    jwt: Vec<RawJwtIssuer>,
    #[serde(default)]
    tokens: RawTokens,
    #[serde(default)]
    risk: RawRisk,
    #[serde(default)]
    spiffe: RawSpiffe,
}

/// `[approvals]`: how requests held for a human approver are answered.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawApprovals {
    mode: Option<String>,
    wait_secs: Option<u64>,
    webhook_url: Option<String>,
    signed_decisions: Option<String>,
}

/// How a held caller is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApprovalMode {
    /// Keep the request open up to `wait`, then answer 202 with the ticket if still pending.
    Wait,
    /// Answer 202 with the ticket at once.
    Ticket,
}

/// Human-in-the-loop settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalsConfig {
    pub mode: ApprovalMode,
    /// How long a held request waits for a decision before it is answered 202 (wait mode).
    pub wait: Duration,
    /// Where to POST a notification of each new approval request (JSON).
    pub webhook_url: Option<String>,
    /// Whether a decision must carry the approver's own signature (made with a key registered
    /// under `/api/v1/approver-keys`). When false, an unsigned decision is signed by the gateway
    /// alone; a signed one is still checked.
    pub require_approver_signature: bool,
}

/// `[identity.spiffe]`: services and models authenticated by client certificate.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSpiffe {
    #[serde(default)]
    trust_domains: Vec<String>,
    #[serde(default)]
    rules: Vec<RawSpiffeRule>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpiffeRule {
    id: Option<String>,
    kind: Option<String>,
    principal: Option<String>,
    #[serde(default)]
    groups: Vec<String>,
}

/// `[identity.risk]`: the principal risk score policy reads as `context.risk_score`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRisk {
    half_life_secs: Option<u64>,
}

/// `[identity.tokens]`: agents' task tokens.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTokens {
    max_ttl_secs: Option<u64>,
    revocation_poll_ms: Option<u64>,
}

/// How task tokens are issued and revocations followed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokensConfig {
    /// The longest life a minted task token may have.
    pub max_ttl: Duration,
    /// How often the store is re-read for agents and revocations made through other replicas.
    pub revocation_poll: Duration,
}

/// One `[[identity.jwt]]` table: a trusted OIDC/JWT issuer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJwtIssuer {
    issuer: Option<String>,
    audiences: Option<Vec<String>>,
    algorithms: Option<Vec<String>>,
    jwks_file: Option<PathBuf>,
    jwks_url: Option<String>,
    leeway_secs: Option<u64>,
    subject_claim: Option<String>,
    groups_claim: Option<String>,
    #[serde(default)]
    group_map: std::collections::HashMap<String, String>,
    pass_through_groups: Option<bool>,
    #[serde(default)]
    default_groups: Vec<String>,
    posture_claim: Option<String>,
    jwks_refresh_floor_ms: Option<u64>,
    jwks_max_age_secs: Option<u64>,
}

/// One `[[audit.export]]` table: a SIEM sink.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawExport {
    name: Option<String>,
    kind: Option<String>,
    format: Option<String>,
    // syslog
    address: Option<String>,
    tls: Option<bool>,
    facility: Option<u8>,
    hostname: Option<String>,
    // TLS (syslog+tls, https webhooks)
    ca_file: Option<PathBuf>,
    server_name: Option<String>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    // webhook
    url: Option<String>,
    token_env: Option<String>,
    token_file: Option<PathBuf>,
    token: Option<toml::Value>,
    index: Option<String>,
    // file
    path: Option<PathBuf>,
    rotate_bytes: Option<u64>,
    keep: Option<usize>,
    // delivery
    batch: Option<usize>,
    poll_ms: Option<u64>,
    timeout_ms: Option<u64>,
    backoff_min_ms: Option<u64>,
    backoff_max_ms: Option<u64>,
    alert_backlog: Option<u64>,
    max_backlog: Option<u64>,
    start: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstream {
    name: Option<String>,
    base_url: Option<String>,
    api_key_env: Option<String>,
    api_key_file: Option<PathBuf>,
    api_key: Option<toml::Value>,
    connect_timeout_ms: Option<u64>,
    first_byte_timeout_ms: Option<u64>,
    idle_timeout_ms: Option<u64>,
    max_response_bytes: Option<usize>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    name: Option<String>,
    upstream: Option<String>,
    upstream_model: Option<String>,
    #[serde(default)]
    groups: Vec<String>,
    requests_per_minute: Option<u32>,
    tokens_per_minute: Option<u32>,
    classification: Option<String>,
    #[serde(default)]
    registry: bool,
}

/// `[[network_zones]]`: a named set of address ranges policy sees as `context.network_zone`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNetworkZone {
    name: Option<String>,
    #[serde(default)]
    cidrs: Vec<String>,
    failed_auth_per_minute: Option<u32>,
    failed_auth_burst: Option<u32>,
}

/// One `[[tools]]`, `[[documents]]` or `[[destinations]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCatalogueEntry {
    name: Option<String>,
    #[serde(default)]
    groups: Vec<String>,
    classification: Option<String>,
    owner: Option<String>,
    #[serde(default)]
    readers: Vec<String>,
    #[serde(default)]
    labels: Vec<String>,
}

/// What policy knows of a tool, document or destination: its groups (Cedar parents, sorted),
/// the classification of the data it holds or reaches, and for documents mostly, its owner
/// (`kind:id`), the principal groups its ACL lets read it and free labels (all in the request
/// context as `resource_owner`, `resource_readers`, `resource_labels`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CatalogueEntry {
    pub groups: Vec<String>,
    pub classification: String,
    pub owner: String,
    pub readers: std::collections::BTreeSet<String>,
    pub labels: std::collections::BTreeSet<String>,
}

/// The tool, document and destination catalogues, by name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Catalogue {
    pub tools: HashMap<String, CatalogueEntry>,
    pub documents: HashMap<String, CatalogueEntry>,
    pub destinations: HashMap<String, CatalogueEntry>,
}

impl Catalogue {
    /// The entry for a resource, if the catalogue lists it.
    pub fn entry(&self, resource: &ztai_core::Resource) -> Option<&CatalogueEntry> {
        use ztai_core::Resource as R;
        match resource {
            R::Tool(n) => self.tools.get(n),
            R::Document(n) => self.documents.get(n),
            R::Destination(n) => self.destinations.get(n),
            _ => None,
        }
    }
}

fn catalogue_part(
    section: &str,
    raw: &[RawCatalogueEntry],
) -> Result<HashMap<String, CatalogueEntry>, ConfigError> {
    let mut out = HashMap::new();
    for (i, e) in raw.iter().enumerate() {
        let k = |f: &str| format!("{section}[{i}].{f}");
        let name = e
            .name
            .clone()
            .ok_or_else(|| err(k("name"), "is required"))?;
        if name.is_empty() || name.len() > 256 || name.chars().any(char::is_control) {
            return Err(err(
                k("name"),
                "must be 1 to 256 characters, without control characters",
            ));
        }
        let entry = CatalogueEntry::checked(
            &e.groups,
            e.classification.as_deref(),
            e.owner.as_deref(),
            &e.readers,
            &e.labels,
        )
        .map_err(|(field, message)| err(k(field), message))?;
        if out.insert(name.clone(), entry).is_some() {
            return Err(err(k("name"), format!("`{name}` is listed twice")));
        }
    }
    Ok(out)
}

impl CatalogueEntry {
    /// An entry from its fields, each checked; the error names the field and what is wrong.
    /// Groups are sorted and deduplicated.
    pub fn checked(
        groups: &[String],
        classification: Option<&str>,
        owner: Option<&str>,
        readers: &[String],
        labels: &[String],
    ) -> Result<Self, (&'static str, String)> {
        let classification = classification.unwrap_or_default().to_string();
        if !classification.is_empty() && !CLASSIFICATIONS.contains(&classification.as_str()) {
            return Err((
                "classification",
                format!(
                    "`{classification}` is not a level; use one of {}",
                    CLASSIFICATIONS.join(", ")
                ),
            ));
        }
        let owner = owner.unwrap_or_default().to_string();
        if !owner.is_empty()
            && !owner.split_once(':').is_some_and(|(kind, id)| {
                ztai_core::PrincipalKind::parse(kind).is_some() && valid_label(id)
            })
        {
            return Err((
                "owner",
                format!("`{owner}` is not a principal: write kind:id, e.g. \"user:alice\""),
            ));
        }
        for (field, values) in [("groups", groups), ("readers", readers), ("labels", labels)] {
            if values.len() > 64 {
                return Err((field, "at most 64 names".to_string()));
            }
            if let Some(bad) = values.iter().find(|v| !valid_label(v)) {
                return Err((
                    field,
                    format!(
                        "`{}` must be 1 to 128 characters of letters, digits, `-`, `_`, `.`, `@` or `:`",
                        bad.chars()
                            .filter(|c| !c.is_control())
                            .take(64)
                            .collect::<String>()
                    ),
                ));
            }
        }
        let mut groups = groups.to_vec();
        groups.sort();
        groups.dedup();
        Ok(CatalogueEntry {
            groups,
            classification,
            owner,
            readers: readers.iter().cloned().collect(),
            labels: labels.iter().cloned().collect(),
        })
    }

    /// The entry as policy sees it.
    pub fn facts(&self) -> ztai_policy::ResourceFacts<'_> {
        ztai_policy::ResourceFacts {
            parents: &self.groups,
            classification: &self.classification,
            owner: &self.owner,
            readers: &self.readers,
            labels: &self.labels,
        }
    }
}

/// Group, reader, label and owner-id names in the catalogue.
fn valid_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.@:".contains(c))
}

/// A named network zone: the first zone (in file order) holding the client's address names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkZone {
    pub name: String,
    pub ranges: Vec<ipnet::IpNet>,
    /// This zone's own pre-authentication limit per address (an office behind one NAT address
    /// needs more than the default); `None` keeps `[limits]`'s.
    pub failed_auth: Option<FailedAuthLimit>,
}

/// How many failed authentications one client address may have: a bucket of `burst` refilled
/// at `per_minute`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailedAuthLimit {
    pub per_minute: u32,
    pub burst: u32,
}

/// Failed authentications an address may have per minute before it is limited, by default.
pub const DEFAULT_FAILED_AUTH_PER_MINUTE: u32 = 30;
/// Failed authentications an address may have at once, by default.
pub const DEFAULT_FAILED_AUTH_BURST: u32 = 50;
/// How often one record sums up what a limited address was refused, by default.
pub const DEFAULT_FAILED_AUTH_SUMMARY: Duration = Duration::from_secs(60);

impl FailedAuthLimit {
    /// `<prefix>failed_auth_per_minute` and `<prefix>failed_auth_burst`, each at least 1.
    fn from_raw(
        prefix: &str,
        per_minute: Option<u32>,
        burst: Option<u32>,
        default: FailedAuthLimit,
    ) -> Result<Self, ConfigError> {
        let limit = FailedAuthLimit {
            per_minute: per_minute.unwrap_or(default.per_minute),
            burst: burst.unwrap_or(default.burst),
        };
        if limit.per_minute == 0 {
            return Err(err(
                format!("{prefix}failed_auth_per_minute"),
                "must be at least 1",
            ));
        }
        if limit.burst == 0 {
            return Err(err(
                format!("{prefix}failed_auth_burst"),
                "must be at least 1",
            ));
        }
        Ok(limit)
    }
}

/// The levels `data_classification` takes, least to most sensitive.
pub const CLASSIFICATIONS: [&str; 4] = ["public", "internal", "confidential", "restricted"];

/// Where an upstream's key comes from. There is deliberately no variant for a literal in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamKey {
    None,
    Env(String),
    File(PathBuf),
    /// Set programmatically (the quick start), never parsed from configuration text.
    Value(String),
}

/// Where an issuer publishes its keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    File(PathBuf),
    /// Fetched over HTTPS (plain HTTP only to a loopback address).
    Url(http::Uri),
}

impl std::fmt::Display for JwksSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JwksSource::File(p) => write!(f, "{}", p.display()),
            JwksSource::Url(u) => write!(f, "{u}"),
        }
    }
}

/// A trusted JWT issuer; its key set is read from `jwks_file` (or fetched from `jwks_url`) at start and re-read (at most once
/// per `jwks_refresh_floor`) when a token names a key it does not have, so key rotation needs no
/// restart and a flood of made-up `kid`s cannot turn into a flood of reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtIssuerConfig {
    pub issuer: String,
    pub audiences: Vec<String>,
    pub algorithms: Vec<ztai_identity::jwt::JwtAlgorithm>,
    pub jwks: JwksSource,
    pub leeway: Duration,
    pub mapping: ztai_identity::jwt::ClaimMapping,
    pub jwks_refresh_floor: Duration,
    /// The key set is re-read once it is this old, so a withdrawn key stops working.
    pub jwks_max_age: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamConfig {
    pub name: String,
    /// Base URL including the API prefix, e.g. `https://api.openai.com/v1`.
    pub base_url: String,
    pub key: UpstreamKey,
    pub connect_timeout: Duration,
    pub first_byte_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_response_bytes: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelConfig {
    /// The name clients use.
    pub name: String,
    pub upstream: String,
    /// The name sent upstream.
    pub upstream_model: String,
    /// Model groups (Cedar `ModelGroup` parents).
    pub groups: Vec<String>,
    pub requests_per_minute: Option<u32>,
    pub tokens_per_minute: Option<u32>,
    /// What the model may see, as policy reads it (`context.data_classification`); "" if unset.
    pub classification: String,
    /// Routed through the model registry: traffic goes only to the registered version that is
    /// deployed (verified, scan-clean, approved), and `upstream_model` comes from that version.
    pub registry: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitsConfig {
    pub requests_per_minute: u32,
    pub request_burst: u32,
    pub tokens_per_minute: u32,
    /// The pre-authentication limit per client address (zones may override it).
    pub failed_auth: FailedAuthLimit,
    /// How often a limited address's refusals are summed up in one record.
    pub failed_auth_summary: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InspectConfig {
    pub redact_output: Vec<FindingCategory>,
    /// Output findings below this severity are recorded but neither redacted nor blocked
    /// (names and dates are low: removing every date from every answer is rarely wanted).
    pub output_min_severity: Severity,
    /// Custom dictionaries added to the rules tier.
    pub dictionaries: Vec<ztai_inspect::Dictionary>,
    /// Hosts (and their subdomains) that images and links in answers may carry data to.
    pub link_allowlist: Vec<String>,
    /// Place a per-request canary in chat system prompts and treat its return as a leak.
    pub canary: bool,
    pub block_output: Vec<FindingCategory>,
    pub stream_window_bytes: usize,
    /// How redacted values are replaced (input obligations and output redaction alike).
    pub redaction: ztai_inspect::Replacement,
    /// A redaction session (numbering, hash key, token vault) is forgotten this long after its
    /// last use...
    pub redaction_session_ttl: Duration,
    /// ...or when this many newer sessions exist.
    pub redaction_max_sessions: usize,
    pub semantic: SemanticConfig,
}

/// The semantic tier: whether it runs, where its fetched weights are, and the classifier score
/// from which undecided text reaches it.
#[derive(Debug, Clone, PartialEq)]
pub struct SemanticConfig {
    pub mode: ztai_semantic::Mode,
    pub dir: PathBuf,
    pub band: f32,
}

// `band` is checked to be a number from 0 to 1 (never NaN), so equality is an equivalence.
impl Eq for SemanticConfig {}

impl SemanticConfig {
    fn from_raw(raw: RawSemantic, base: &Path) -> Result<Self, ConfigError> {
        let mode = match raw.mode.as_deref() {
            None => ztai_semantic::Mode::default(),
            Some(s) => ztai_semantic::Mode::parse(s).ok_or_else(|| {
                err(
                    "inspect.semantic.mode",
                    format!("`{s}` is not a mode; use {}", ztai_semantic::Mode::NAMES),
                )
            })?,
        };
        let band = raw.band.unwrap_or(ztai_inspect::DEFAULT_BAND);
        if !(0.0..=1.0).contains(&band) {
            return Err(err(
                "inspect.semantic.band",
                format!("{band} is not a classifier score; use a number from 0 to 1"),
            ));
        }
        Ok(SemanticConfig {
            mode,
            dir: raw
                .dir
                .map(|d| base.join(d))
                .unwrap_or_else(ztai_semantic::weights::default_dir),
            band,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditConfig {
    /// Principal kinds whose identifiers are recorded as keyed pseudonyms.
    pub pseudonymise: Vec<String>,
    /// Sign a checkpoint after this many new records...
    pub checkpoint_every: u64,
    /// ...or after this long with new records.
    pub checkpoint_interval: Duration,
    /// SIEM sinks the log is exported to.
    pub export: Vec<ztai_audit::export::SinkConfig>,
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    /// The egress (forward) proxy's listener; none when unset.
    pub egress_listen: Option<SocketAddr>,
    pub instance: String,
    pub max_body_bytes: usize,
    pub max_header_bytes: usize,
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
    pub data_dir: PathBuf,
    pub policy_dir: PathBuf,
    pub policy_reload_interval: Duration,
    pub limits: LimitsConfig,
    pub inspect: InspectConfig,
    pub audit: AuditConfig,
    pub jwt_issuers: Vec<JwtIssuerConfig>,
    pub tokens: TokensConfig,
    pub approvals: ApprovalsConfig,
    pub network_zones: Vec<NetworkZone>,
    pub catalogue: Catalogue,
    /// How long a principal's risk score takes to halve without new findings.
    pub risk_half_life: Duration,
    /// TLS on the data plane, when configured.
    pub tls: Option<ServerTlsConfig>,
    /// Client certificate SPIFFE IDs → principals.
    pub spiffe: ztai_identity::spiffe::SpiffeMapping,
    pub upstreams: Vec<UpstreamConfig>,
    pub models: Vec<ModelConfig>,
    /// The MCP servers fronted at `/mcp/{server}`.
    pub mcp: mcp::McpConfig,
}

fn addr(key: &str, value: Option<String>, default: &str) -> Result<SocketAddr, ConfigError> {
    let text = value.unwrap_or_else(|| default.to_string());
    text.parse().map_err(|_| {
        err(
            key,
            format!(
                "`{text}` is not a socket address; write it as `127.0.0.1:8080` or `[::1]:8080`"
            ),
        )
    })
}

fn categories(
    key: &str,
    values: Option<Vec<String>>,
    default: &[FindingCategory],
) -> Result<Vec<FindingCategory>, ConfigError> {
    match values {
        None => Ok(default.to_vec()),
        Some(v) => v
            .iter()
            .map(|c| {
                FindingCategory::parse(c).ok_or_else(|| {
                    err(
                        key,
                        format!("unknown category `{c}`; use prompt_injection, pii, secret, obfuscation, custom or leak"),
                    )
                })
            })
            .collect(),
    }
}

/// Loads one `[[inspect.dictionaries]]` table: inline `terms` or a `file` (relative paths from
/// the configuration's directory), never both.
fn dictionary(
    i: usize,
    d: RawDictionary,
    base: &Path,
) -> Result<ztai_inspect::Dictionary, ConfigError> {
    let key = format!("inspect.dictionaries[{i}]");
    let severity = match d.severity.as_deref() {
        None => Severity::High,
        Some(s) => Severity::parse(s).ok_or_else(|| {
            err(
                format!("{key}.severity"),
                format!("`{s}` is not a severity; use low, medium, high or critical"),
            )
        })?,
    };
    let list = match (d.terms, d.file) {
        (Some(terms), None) => terms.join("\n"),
        (None, Some(file)) => {
            let path = if file.is_absolute() {
                file
            } else {
                base.join(file)
            };
            std::fs::read_to_string(&path).map_err(|e| {
                err(
                    format!("{key}.file"),
                    format!("cannot read {}: {e}", path.display()),
                )
            })?
        }
        _ => {
            return Err(err(
                &key,
                "give exactly one of `terms` (a list) or `file` (a path)",
            ));
        }
    };
    ztai_inspect::Dictionary::parse(&d.name, severity, &list).map_err(|e| err(&key, e.to_string()))
}

/// Validates one `[[audit.export]]` table; fields that belong to another kind of sink are refused
/// by name rather than silently ignored.
fn export_sink(
    i: usize,
    x: RawExport,
    resolve: &dyn Fn(PathBuf) -> PathBuf,
    instance: &str,
) -> Result<ztai_audit::export::SinkConfig, ConfigError> {
    use ztai_audit::export::{
        ExportFormat, FileTarget, SinkConfig, SinkTarget, SyslogTarget, TlsTarget, TokenSource,
        WebhookTarget,
    };
    let k = |f: &str| format!("audit.export[{i}].{f}");
    let name = x
        .name
        .clone()
        .ok_or_else(|| err(k("name"), "is required"))?;
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(err(
            k("name"),
            format!("`{name}` must be 1-64 letters, digits, `-`, `_` or `.`"),
        ));
    }
    let kind = x
        .kind
        .clone()
        .ok_or_else(|| err(k("kind"), "is required: syslog, webhook or file"))?;
    let foreign = |fields: &[(&str, bool)], kind: &str| -> Result<(), ConfigError> {
        match fields.iter().find(|(_, set)| *set) {
            Some((f, _)) => Err(err(k(f), format!("does not apply to a `{kind}` sink"))),
            None => Ok(()),
        }
    };
    let tls_fields = |x: &RawExport| TlsTarget {
        ca_file: x.ca_file.clone().map(resolve),
        server_name: x.server_name.clone().unwrap_or_default(),
        cert_file: x.cert_file.clone().map(resolve),
        key_file: x.key_file.clone().map(resolve),
    };
    let check_files = |t: &TlsTarget| -> Result<(), ConfigError> {
        for (f, p) in [
            ("ca_file", &t.ca_file),
            ("cert_file", &t.cert_file),
            ("key_file", &t.key_file),
        ] {
            if let Some(p) = p
                && !p.is_file()
            {
                return Err(err(
                    k(f),
                    format!("`{}` does not exist or is not a file", p.display()),
                ));
            }
        }
        if t.cert_file.is_some() != t.key_file.is_some() {
            return Err(err(k("cert_file"), "set cert_file and key_file together"));
        }
        Ok(())
    };
    let (target, default_format) = match kind.as_str() {
        "syslog" => {
            foreign(
                &[
                    ("url", x.url.is_some()),
                    ("token_env", x.token_env.is_some()),
                    ("token_file", x.token_file.is_some()),
                    ("token", x.token.is_some()),
                    ("index", x.index.is_some()),
                    ("path", x.path.is_some()),
                    ("rotate_bytes", x.rotate_bytes.is_some()),
                    ("keep", x.keep.is_some()),
                ],
                "syslog",
            )?;
            let address = x
                .address
                .clone()
                .ok_or_else(|| err(k("address"), "is required: `host:port` of the receiver"))?;
            let host = match address.rsplit_once(':') {
                Some((h, p)) if !h.is_empty() && p.parse::<u16>().is_ok() => {
                    h.trim_start_matches('[').trim_end_matches(']').to_string()
                }
                _ => {
                    return Err(err(
                        k("address"),
                        format!("`{address}` must be `host:port`, e.g. `siem.example.com:6514`"),
                    ));
                }
            };
            let tls = if x.tls.unwrap_or(false) {
                let mut t = tls_fields(&x);
                if t.server_name.is_empty() {
                    t.server_name = host;
                }
                check_files(&t)?;
                Some(t)
            } else {
                foreign(
                    &[
                        ("ca_file", x.ca_file.is_some()),
                        ("server_name", x.server_name.is_some()),
                        ("cert_file", x.cert_file.is_some()),
                        ("key_file", x.key_file.is_some()),
                    ],
                    "syslog without `tls = true`",
                )?;
                None
            };
            let facility = x.facility.unwrap_or(13);
            if facility > 23 {
                return Err(err(k("facility"), "must be between 0 and 23 (RFC 5424)"));
            }
            (
                SinkTarget::Syslog(SyslogTarget {
                    address,
                    tls,
                    facility,
                    hostname: x.hostname.clone().unwrap_or_else(|| instance.to_string()),
                }),
                ExportFormat::Cef,
            )
        }
        "webhook" => {
            foreign(
                &[
                    ("address", x.address.is_some()),
                    ("tls", x.tls.is_some()),
                    ("facility", x.facility.is_some()),
                    ("hostname", x.hostname.is_some()),
                    ("server_name", x.server_name.is_some()),
                    ("path", x.path.is_some()),
                    ("rotate_bytes", x.rotate_bytes.is_some()),
                    ("keep", x.keep.is_some()),
                ],
                "webhook",
            )?;
            let url = x.url.clone().ok_or_else(|| {
                err(
                    k("url"),
                    "is required, e.g. `https://splunk:8088/services/collector/event`",
                )
            })?;
            let uri: http::Uri = url
                .parse()
                .map_err(|e| err(k("url"), format!("`{url}` is not a URL: {e}")))?;
            if !matches!(uri.scheme_str(), Some("http") | Some("https")) || uri.host().is_none() {
                return Err(err(
                    k("url"),
                    format!("`{url}` must be an http:// or https:// URL with a host"),
                ));
            }
            if x.token.is_some() {
                return Err(err(
                    k("token"),
                    "tokens are never read from the configuration text; use `token_env = \"VAR\"` or `token_file = \"path\"`",
                ));
            }
            let token = match (x.token_env.clone(), x.token_file.clone()) {
                (Some(_), Some(_)) => {
                    return Err(err(
                        k("token_env"),
                        "set either token_env or token_file, not both",
                    ));
                }
                (Some(v), None) => {
                    if std::env::var_os(&v).is_none() {
                        return Err(err(
                            k("token_env"),
                            format!("environment variable `{v}` is not set"),
                        ));
                    }
                    TokenSource::Env(v)
                }
                (None, Some(f)) => {
                    let f = resolve(f);
                    if !f.is_file() {
                        return Err(err(
                            k("token_file"),
                            format!("`{}` does not exist or is not a file", f.display()),
                        ));
                    }
                    TokenSource::File(f)
                }
                (None, None) => TokenSource::None,
            };
            let tls = tls_fields(&x);
            check_files(&tls)?;
            (
                SinkTarget::Webhook(WebhookTarget {
                    url: uri,
                    token,
                    host: instance.to_string(),
                    index: x.index.clone(),
                    tls,
                }),
                ExportFormat::Ocsf,
            )
        }
        "file" => {
            foreign(
                &[
                    ("address", x.address.is_some()),
                    ("tls", x.tls.is_some()),
                    ("facility", x.facility.is_some()),
                    ("hostname", x.hostname.is_some()),
                    ("url", x.url.is_some()),
                    ("token_env", x.token_env.is_some()),
                    ("token_file", x.token_file.is_some()),
                    ("token", x.token.is_some()),
                    ("index", x.index.is_some()),
                    ("ca_file", x.ca_file.is_some()),
                    ("server_name", x.server_name.is_some()),
                    ("cert_file", x.cert_file.is_some()),
                    ("key_file", x.key_file.is_some()),
                ],
                "file",
            )?;
            let path = resolve(
                x.path
                    .clone()
                    .ok_or_else(|| err(k("path"), "is required, e.g. `export/audit.jsonl`"))?,
            );
            let rotate_bytes = x.rotate_bytes.unwrap_or(100 * 1024 * 1024);
            if rotate_bytes < 4096 {
                return Err(err(k("rotate_bytes"), "must be at least 4096"));
            }
            (
                SinkTarget::File(FileTarget {
                    path,
                    rotate_bytes,
                    keep: x.keep.unwrap_or(10),
                }),
                ExportFormat::Ocsf,
            )
        }
        other => {
            return Err(err(
                k("kind"),
                format!("unknown sink kind `{other}`; use syslog, webhook or file"),
            ));
        }
    };
    let format = match x.format.as_deref() {
        None => default_format,
        Some(f) => ExportFormat::parse(f).ok_or_else(|| {
            err(
                k("format"),
                format!("unknown format `{f}`; use ocsf, cef or json"),
            )
        })?,
    };
    let batch = x.batch.unwrap_or(500);
    if !(1..=10_000).contains(&batch) {
        return Err(err(k("batch"), "must be between 1 and 10000"));
    }
    let backoff_min = ms(&k("backoff_min_ms"), x.backoff_min_ms, 200)?;
    let backoff_max = ms(&k("backoff_max_ms"), x.backoff_max_ms, 30_000)?;
    if backoff_max < backoff_min {
        return Err(err(k("backoff_max_ms"), "must not be below backoff_min_ms"));
    }
    let alert_backlog = x.alert_backlog.unwrap_or(10_000);
    let max_backlog = x.max_backlog.unwrap_or(10_000_000);
    if alert_backlog == 0 || max_backlog < alert_backlog {
        return Err(err(
            k("max_backlog"),
            "alert_backlog must be at least 1 and max_backlog at least alert_backlog",
        ));
    }
    let start_at_head = match x.start.as_deref() {
        None | Some("oldest") => false,
        Some("newest") => true,
        Some(o) => {
            return Err(err(
                k("start"),
                format!("`{o}` must be `oldest` or `newest`"),
            ));
        }
    };
    Ok(SinkConfig {
        name,
        target,
        format,
        batch,
        poll: ms(&k("poll_ms"), x.poll_ms, 250)?,
        timeout: ms(&k("timeout_ms"), x.timeout_ms, 10_000)?,
        backoff_min,
        backoff_max,
        alert_backlog,
        max_backlog,
        start_at_head,
    })
}

/// A URL the gateway fetches from or posts to: HTTPS, or plain HTTP only to a loopback address.
pub(crate) fn https_or_loopback(key: &str, u: &str, why: &str) -> Result<http::Uri, ConfigError> {
    let uri: http::Uri = u
        .parse()
        .map_err(|e| err(key, format!("`{u}` is not a URL: {e}")))?;
    let host = uri.host().unwrap_or_default();
    let loopback = host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match uri.scheme_str() {
        Some("https") if !host.is_empty() => Ok(uri.clone()),
        Some("http") if loopback => Ok(uri.clone()),
        _ => Err(err(
            key,
            format!(
                "`{u}` must be an https:// URL ({why}; plain http is allowed only to a loopback address)"
            ),
        )),
    }
}

fn ms(key: &str, value: Option<u64>, default: u64) -> Result<Duration, ConfigError> {
    match value.unwrap_or(default) {
        0 => Err(err(key, "must be greater than 0 milliseconds")),
        v => Ok(Duration::from_millis(v)),
    }
}

impl Config {
    /// Reads and validates a configuration file. Relative paths in it are relative to the file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            err(
                path.display().to_string(),
                format!("cannot read the configuration file: {e}"),
            )
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, base)
    }

    /// Parses and validates configuration text; `base` resolves relative paths.
    pub fn parse(text: &str, base: &Path) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let key = e
                .span()
                .map(|s| {
                    let line = text
                        .get(..s.start)
                        .map(|t| t.matches('\n').count() + 1)
                        .unwrap_or(0);
                    format!("line {line}")
                })
                .unwrap_or_else(|| "(file)".into());
            err(key, e.message().to_string())
        })?;
        let resolve = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };

        let listen = addr("server.listen", raw.server.listen, "127.0.0.1:8080")?;
        let admin_listen = addr(
            "server.admin_listen",
            raw.server.admin_listen,
            "127.0.0.1:8081",
        )?;
        let egress_listen = match raw.server.egress_listen.clone() {
            Some(text) => Some(addr("server.egress_listen", Some(text), "")?),
            None => None,
        };
        let max_body_bytes = raw.server.max_body_bytes.unwrap_or(4 * 1024 * 1024);
        if max_body_bytes == 0 || max_body_bytes > 256 * 1024 * 1024 {
            return Err(err(
                "server.max_body_bytes",
                "must be between 1 and 268435456",
            ));
        }
        let max_header_bytes = raw.server.max_header_bytes.unwrap_or(16 * 1024);
        if !(8192..=1024 * 1024).contains(&max_header_bytes) {
            return Err(err(
                "server.max_header_bytes",
                "must be between 8192 and 1048576",
            ));
        }
        let data_dir = resolve(
            raw.storage
                .data_dir
                .unwrap_or_else(|| PathBuf::from(".ztai")),
        );
        let policy_dir = resolve(raw.policy.dir.unwrap_or_else(|| PathBuf::from("policies")));

        let limits = LimitsConfig {
            requests_per_minute: raw.limits.requests_per_minute.unwrap_or(600),
            request_burst: raw.limits.request_burst.unwrap_or(100),
            tokens_per_minute: raw.limits.tokens_per_minute.unwrap_or(1_000_000),
            failed_auth: FailedAuthLimit::from_raw(
                "limits.",
                raw.limits.failed_auth_per_minute,
                raw.limits.failed_auth_burst,
                FailedAuthLimit {
                    per_minute: DEFAULT_FAILED_AUTH_PER_MINUTE,
                    burst: DEFAULT_FAILED_AUTH_BURST,
                },
            )?,
            failed_auth_summary: match raw.limits.failed_auth_summary_secs {
                None => DEFAULT_FAILED_AUTH_SUMMARY,
                Some(0) => {
                    return Err(err("limits.failed_auth_summary_secs", "must be at least 1"));
                }
                Some(s) => Duration::from_secs(s),
            },
        };
        if limits.requests_per_minute == 0 {
            return Err(err("limits.requests_per_minute", "must be at least 1"));
        }
        if limits.tokens_per_minute == 0 {
            return Err(err("limits.tokens_per_minute", "must be at least 1"));
        }

        let inspect = InspectConfig {
            redact_output: categories(
                "inspect.redact_output",
                raw.inspect.redact_output,
                &[
                    FindingCategory::Secret,
                    FindingCategory::Pii,
                    FindingCategory::Leak,
                ],
            )?,
            output_min_severity: match raw.inspect.output_min_severity.as_deref() {
                None => Severity::Medium,
                Some(s) => Severity::parse(s).ok_or_else(|| {
                    err(
                        "inspect.output_min_severity",
                        format!("`{s}` is not a severity; use low, medium, high or critical"),
                    )
                })?,
            },
            block_output: categories("inspect.block_output", raw.inspect.block_output, &[])?,
            stream_window_bytes: raw.inspect.stream_window_bytes.unwrap_or(256),
            dictionaries: raw
                .inspect
                .dictionaries
                .into_iter()
                .enumerate()
                .map(|(i, d)| dictionary(i, d, base))
                .collect::<Result<_, _>>()?,
            link_allowlist: raw.inspect.link_allowlist.unwrap_or_default(),
            canary: raw.inspect.canary.unwrap_or(false),
            redaction: match raw.inspect.redaction.as_deref() {
                None => ztai_inspect::Replacement::Placeholder,
                Some(s) => ztai_inspect::Replacement::parse(s).ok_or_else(|| {
                    err(
                        "inspect.redaction",
                        format!(
                            "`{s}` is not a redaction mode; use {}",
                            ztai_inspect::Replacement::NAMES
                        ),
                    )
                })?,
            },
            redaction_session_ttl: match raw.inspect.redaction_session_ttl_secs {
                None => Duration::from_secs(3600),
                Some(0) => {
                    return Err(err(
                        "inspect.redaction_session_ttl_secs",
                        "must be at least 1 second",
                    ));
                }
                Some(s) => Duration::from_secs(s),
            },
            redaction_max_sessions: match raw.inspect.redaction_max_sessions {
                None => 4096,
                Some(0) => {
                    return Err(err("inspect.redaction_max_sessions", "must be at least 1"));
                }
                Some(n) => n,
            },
            semantic: SemanticConfig::from_raw(raw.inspect.semantic, base)?,
        };

        let pseudonymise = raw.audit.pseudonymise.unwrap_or_default();
        if let Some(k) = pseudonymise
            .iter()
            .find(|k| ztai_core::PrincipalKind::parse(k).is_none())
        {
            return Err(err(
                "audit.pseudonymise",
                format!("unknown principal kind `{k}`; use user, agent, service or model"),
            ));
        }
        let audit = AuditConfig {
            pseudonymise,
            checkpoint_every: match raw.audit.checkpoint_every.unwrap_or(10_000) {
                0 => return Err(err("audit.checkpoint_every", "must be at least 1")),
                n => n,
            },
            checkpoint_interval: ms(
                "audit.checkpoint_interval_ms",
                raw.audit.checkpoint_interval_ms,
                60_000,
            )?,
            export: Vec::new(),
        };
        let mut audit = audit;
        let mut sink_names = HashSet::new();
        for (i, x) in raw.audit.export.into_iter().enumerate() {
            let instance = raw
                .server
                .instance
                .clone()
                .unwrap_or_else(|| "ztai-1".into());
            let sink = export_sink(i, x, &resolve, &instance)?;
            if !sink_names.insert(sink.name.clone()) {
                return Err(err(
                    format!("audit.export[{i}].name"),
                    format!(
                        "sink `{}` is defined twice; names key the delivery cursors",
                        sink.name
                    ),
                ));
            }
            audit.export.push(sink);
        }
        if !(32..=65536).contains(&inspect.stream_window_bytes) {
            return Err(err(
                "inspect.stream_window_bytes",
                "must be between 32 and 65536",
            ));
        }

        let max_ttl_secs = raw.identity.tokens.max_ttl_secs.unwrap_or(3600);
        if !(1..=86_400).contains(&max_ttl_secs) {
            return Err(err(
                "identity.tokens.max_ttl_secs",
                "must be between 1 and 86400 (a day): task tokens are meant to be short-lived",
            ));
        }
        let tokens = TokensConfig {
            max_ttl: Duration::from_secs(max_ttl_secs),
            revocation_poll: ms(
                "identity.tokens.revocation_poll_ms",
                raw.identity.tokens.revocation_poll_ms,
                1_000,
            )?,
        };
        let half_life_secs = raw.identity.risk.half_life_secs.unwrap_or(600);
        if !(1..=604_800).contains(&half_life_secs) {
            return Err(err(
                "identity.risk.half_life_secs",
                "must be between 1 and 604800 (a week)",
            ));
        }
        let risk_half_life = Duration::from_secs(half_life_secs);
        let approvals = {
            let a = &raw.approvals;
            let mode = match a.mode.as_deref().unwrap_or("wait") {
                "wait" => ApprovalMode::Wait,
                "ticket" => ApprovalMode::Ticket,
                other => {
                    return Err(err(
                        "approvals.mode",
                        format!(
                            "`{other}` is not a mode: use \"wait\" (hold the request up to wait_secs) or \"ticket\" (answer 202 at once)"
                        ),
                    ));
                }
            };
            let wait_secs = a.wait_secs.unwrap_or(30);
            if !(1..=300).contains(&wait_secs) {
                return Err(err(
                    "approvals.wait_secs",
                    "must be between 1 and 300: longer holds tie up connections; use mode = \"ticket\"",
                ));
            }
            if let Some(u) = &a.webhook_url {
                https_or_loopback(
                    "approvals.webhook_url",
                    u,
                    "approval requests name who asked for what",
                )?;
            }
            let require_approver_signature = match a
                .signed_decisions
                .as_deref()
                .unwrap_or("required")
            {
                "required" => true,
                "optional" => false,
                other => {
                    return Err(err(
                        "approvals.signed_decisions",
                        format!(
                            "`{other}` is not a choice: use \"required\" (every decision carries the approver's own signature) or \"optional\" (unsigned decisions are signed by the gateway alone)"
                        ),
                    ));
                }
            };
            ApprovalsConfig {
                mode,
                wait: Duration::from_secs(wait_secs),
                webhook_url: a.webhook_url.clone(),
                require_approver_signature,
            }
        };
        let catalogue = Catalogue {
            tools: catalogue_part("tools", &raw.tools)?,
            documents: catalogue_part("documents", &raw.documents)?,
            destinations: catalogue_part("destinations", &raw.destinations)?,
        };
        let mut network_zones = Vec::new();
        for (i, z) in raw.network_zones.iter().enumerate() {
            let k = |f: &str| format!("network_zones[{i}].{f}");
            let name = z
                .name
                .clone()
                .ok_or_else(|| err(k("name"), "is required"))?;
            if name.is_empty()
                || name.len() > 64
                || name == "unknown"
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
            {
                return Err(err(
                    k("name"),
                    "must be 1–64 letters, digits, `_`, `-` or `.`, and not `unknown` (the name of no zone)",
                ));
            }
            if z.cidrs.is_empty() {
                return Err(err(
                    k("cidrs"),
                    "list at least one range, e.g. \"10.0.0.0/8\"",
                ));
            }
            let ranges = z
                .cidrs
                .iter()
                .map(|c| {
                    c.parse::<ipnet::IpNet>()
                        .or_else(|_| c.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                        .map(|n| n.trunc())
                        .map_err(|_| {
                            err(
                                k("cidrs"),
                                format!("`{c}` is not an address or a range like 10.0.0.0/8"),
                            )
                        })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let failed_auth = if z.failed_auth_per_minute.is_some() || z.failed_auth_burst.is_some()
            {
                Some(FailedAuthLimit::from_raw(
                    &k(""),
                    z.failed_auth_per_minute,
                    z.failed_auth_burst,
                    limits.failed_auth,
                )?)
            } else {
                None
            };
            network_zones.push(NetworkZone {
                name,
                ranges,
                failed_auth,
            });
        }
        let file = |key: &str, p: PathBuf| -> Result<PathBuf, ConfigError> {
            let p = resolve(p);
            if p.is_file() {
                Ok(p)
            } else {
                Err(err(
                    key,
                    format!("`{}` does not exist or is not a file", p.display()),
                ))
            }
        };
        let tls = match raw.server.tls {
            None => None,
            Some(t) => Some(ServerTlsConfig {
                cert_file: file(
                    "server.tls.cert_file",
                    t.cert_file.ok_or_else(|| {
                        err(
                            "server.tls.cert_file",
                            "is required: the gateway's PEM certificate chain",
                        )
                    })?,
                )?,
                key_file: file(
                    "server.tls.key_file",
                    t.key_file.ok_or_else(|| {
                        err(
                            "server.tls.key_file",
                            "is required: the gateway's PEM private key",
                        )
                    })?,
                )?,
                client_ca_file: t
                    .client_ca_file
                    .map(|p| file("server.tls.client_ca_file", p))
                    .transpose()?,
                require_client_cert: t.require_client_cert.unwrap_or(false),
            }),
        };
        if let Some(t) = &tls
            && t.require_client_cert
            && t.client_ca_file.is_none()
        {
            return Err(err(
                "server.tls.require_client_cert",
                "needs server.tls.client_ca_file, the bundle client certificates must chain to",
            ));
        }
        let mut spiffe = ztai_identity::spiffe::SpiffeMapping::default();
        for td in raw.identity.spiffe.trust_domains {
            if ztai_identity::spiffe::SpiffeId::parse(&format!("spiffe://{td}")).is_err() {
                return Err(err(
                    "identity.spiffe.trust_domains",
                    format!(
                        "`{td}` is not a trust domain (lowercase letters, digits, `-`, `.`, `_`)"
                    ),
                ));
            }
            spiffe.trust_domains.push(td);
        }
        for (i, r) in raw.identity.spiffe.rules.into_iter().enumerate() {
            let k = |f: &str| format!("identity.spiffe.rules[{i}].{f}");
            let id = r.id.ok_or_else(|| {
                err(
                    k("id"),
                    "is required: a SPIFFE ID, or a prefix ending in `/`",
                )
            })?;
            let parsed = ztai_identity::spiffe::SpiffeId::parse(id.trim_end_matches('/'))
                .map_err(|e| err(k("id"), e.to_string()))?;
            if !spiffe
                .trust_domains
                .iter()
                .any(|t| t == parsed.trust_domain())
            {
                return Err(err(
                    k("id"),
                    format!(
                        "its trust domain `{}` is not in identity.spiffe.trust_domains",
                        parsed.trust_domain()
                    ),
                ));
            }
            let kind = r
                .kind
                .as_deref()
                .and_then(PrincipalKind::parse)
                .filter(|k| *k != PrincipalKind::User)
                .ok_or_else(|| err(k("kind"), "must be service, model or agent"))?;
            for name in r.principal.iter().chain(r.groups.iter()) {
                if !ztai_identity::task_token::valid_name(name) {
                    return Err(err(
                        k("principal"),
                        format!(
                            "`{name}` must be 1-128 letters, digits, `-`, `_`, `.`, `@`, `:` or `/`"
                        ),
                    ));
                }
            }
            spiffe.rules.push(ztai_identity::spiffe::SpiffeRule {
                id,
                kind,
                principal: r.principal,
                groups: r.groups,
            });
        }
        if !spiffe.is_empty()
            && tls
                .as_ref()
                .and_then(|t| t.client_ca_file.as_ref())
                .is_none()
        {
            return Err(err(
                "identity.spiffe",
                "client certificates need server.tls with client_ca_file",
            ));
        }
        let mut jwt_issuers: Vec<JwtIssuerConfig> = Vec::new();
        for (i, j) in raw.identity.jwt.into_iter().enumerate() {
            let k = |f: &str| format!("identity.jwt[{i}].{f}");
            let issuer = j
                .issuer
                .ok_or_else(|| err(k("issuer"), "is required: the exact `iss` of its tokens"))?;
            if jwt_issuers.iter().any(|x| x.issuer == issuer) {
                return Err(err(
                    k("issuer"),
                    format!("issuer `{issuer}` is configured twice"),
                ));
            }
            let audiences = j.audiences.unwrap_or_default();
            if audiences.is_empty() {
                return Err(err(
                    k("audiences"),
                    "name at least one audience this gateway accepts (e.g. [\"ztai\"])",
                ));
            }
            let names = j
                .algorithms
                .unwrap_or_else(|| vec!["ES256".into(), "RS256".into()]);
            let mut algorithms = Vec::new();
            for a in &names {
                match ztai_identity::jwt::JwtAlgorithm::parse(a) {
                    Some(alg) => algorithms.push(alg),
                    None => {
                        return Err(err(
                            k("algorithms"),
                            format!(
                                "`{a}` is not accepted; use ES256, ES384, RS256, RS384, RS512, PS256 or EdDSA (never none or HS*)"
                            ),
                        ));
                    }
                }
            }
            let jwks = match (j.jwks_file, j.jwks_url) {
                (Some(_), Some(_)) => {
                    return Err(err(
                        k("jwks_url"),
                        "set either jwks_file or jwks_url, not both",
                    ));
                }
                (None, None) => {
                    return Err(err(
                        k("jwks_file"),
                        "is required (or jwks_url): the issuer's JWKS document",
                    ));
                }
                (Some(f), None) => {
                    let f = resolve(f);
                    if !f.is_file() {
                        return Err(err(
                            k("jwks_file"),
                            format!("`{}` does not exist or is not a file", f.display()),
                        ));
                    }
                    JwksSource::File(f)
                }
                (None, Some(u)) => {
                    let uri = https_or_loopback(
                        &k("jwks_url"),
                        &u,
                        "whoever can change the key set in transit can mint tokens",
                    )?;
                    JwksSource::Url(uri)
                }
            };
            let leeway = Duration::from_secs(j.leeway_secs.unwrap_or(30));
            if leeway > Duration::from_secs(300) {
                return Err(err(
                    k("leeway_secs"),
                    "must be at most 300: leeway is for clock skew, not for extending tokens",
                ));
            }
            jwt_issuers.push(JwtIssuerConfig {
                issuer,
                audiences,
                algorithms,
                jwks,
                leeway,
                mapping: ztai_identity::jwt::ClaimMapping {
                    subject_claim: j.subject_claim.unwrap_or_else(|| "sub".into()),
                    groups_claim: Some(j.groups_claim.unwrap_or_else(|| "groups".into()))
                        .filter(|g| !g.is_empty()),
                    group_map: j.group_map,
                    pass_through: j.pass_through_groups.unwrap_or(true),
                    default_groups: j.default_groups,
                    posture_claim: j.posture_claim.filter(|c| !c.is_empty()),
                },
                jwks_refresh_floor: ms(
                    &k("jwks_refresh_floor_ms"),
                    j.jwks_refresh_floor_ms,
                    60_000,
                )?,
                jwks_max_age: match j.jwks_max_age_secs.unwrap_or(300) {
                    0 => return Err(err(k("jwks_max_age_secs"), "must be at least 1")),
                    n => Duration::from_secs(n),
                },
            });
        }

        let mut upstreams = Vec::new();
        let mut names = HashSet::new();
        for (i, u) in raw.upstreams.into_iter().enumerate() {
            let k = |f: &str| format!("upstreams[{i}].{f}");
            let name = u.name.ok_or_else(|| err(k("name"), "is required"))?;
            if !names.insert(name.clone()) {
                return Err(err(
                    k("name"),
                    format!("upstream `{name}` is defined twice"),
                ));
            }
            let base_url = u
                .base_url
                .ok_or_else(|| err(k("base_url"), "is required"))?;
            let uri: http::Uri = base_url
                .parse()
                .map_err(|e| err(k("base_url"), format!("`{base_url}` is not a URL: {e}")))?;
            if !matches!(uri.scheme_str(), Some("http") | Some("https")) || uri.host().is_none() {
                return Err(err(
                    k("base_url"),
                    format!(
                        "`{base_url}` must be an http:// or https:// URL with a host, e.g. `https://api.openai.com/v1`"
                    ),
                ));
            }
            if u.api_key.is_some() {
                return Err(err(
                    k("api_key"),
                    "keys are never read from the configuration text; use `api_key_env = \"VAR\"` or `api_key_file = \"path\"`",
                ));
            }
            let key = match (u.api_key_env, u.api_key_file) {
                (Some(_), Some(_)) => {
                    return Err(err(
                        k("api_key_env"),
                        "set either api_key_env or api_key_file, not both",
                    ));
                }
                (Some(v), None) => {
                    if std::env::var_os(&v).is_none() {
                        return Err(err(
                            k("api_key_env"),
                            format!("environment variable `{v}` is not set"),
                        ));
                    }
                    UpstreamKey::Env(v)
                }
                (None, Some(f)) => {
                    let f = resolve(f);
                    if !f.is_file() {
                        return Err(err(
                            k("api_key_file"),
                            format!("`{}` does not exist or is not a file", f.display()),
                        ));
                    }
                    UpstreamKey::File(f)
                }
                (None, None) => UpstreamKey::None,
            };
            upstreams.push(UpstreamConfig {
                name,
                base_url: base_url.trim_end_matches('/').to_string(),
                key,
                connect_timeout: ms(&k("connect_timeout_ms"), u.connect_timeout_ms, 2_000)?,
                first_byte_timeout: ms(
                    &k("first_byte_timeout_ms"),
                    u.first_byte_timeout_ms,
                    60_000,
                )?,
                idle_timeout: ms(&k("idle_timeout_ms"), u.idle_timeout_ms, 30_000)?,
                max_response_bytes: u.max_response_bytes.unwrap_or(32 * 1024 * 1024),
            });
        }

        let mut models = Vec::new();
        let mut model_names = HashSet::new();
        for (i, m) in raw.models.into_iter().enumerate() {
            let k = |f: &str| format!("models[{i}].{f}");
            let name = m.name.ok_or_else(|| err(k("name"), "is required"))?;
            if name.is_empty() || name.len() > 256 {
                return Err(err(k("name"), "must be 1 to 256 characters"));
            }
            if !model_names.insert(name.clone()) {
                return Err(err(k("name"), format!("model `{name}` is defined twice")));
            }
            let upstream = m
                .upstream
                .ok_or_else(|| err(k("upstream"), "is required"))?;
            if !names.contains(&upstream) {
                return Err(err(
                    k("upstream"),
                    format!("no upstream named `{upstream}`; define it under [[upstreams]]"),
                ));
            }
            if m.requests_per_minute == Some(0) || m.tokens_per_minute == Some(0) {
                return Err(err(
                    k("requests_per_minute"),
                    "per-model limits must be at least 1",
                ));
            }
            let classification = m.classification.unwrap_or_default();
            if !classification.is_empty() && !CLASSIFICATIONS.contains(&classification.as_str()) {
                return Err(err(
                    k("classification"),
                    format!(
                        "`{classification}` is not a level; use one of {}",
                        CLASSIFICATIONS.join(", ")
                    ),
                ));
            }
            models.push(ModelConfig {
                classification,
                upstream_model: m.upstream_model.unwrap_or_else(|| name.clone()),
                name,
                upstream,
                groups: m.groups,
                requests_per_minute: m.requests_per_minute,
                tokens_per_minute: m.tokens_per_minute,
                registry: m.registry,
            });
        }
        if models.is_empty() {
            return Err(err(
                "models",
                "define at least one [[models]] entry; without one every request is refused",
            ));
        }

        let mcp = raw
            .mcp
            .validate(base, |k, v| categories(k, Some(v.to_vec()), &[]))?;

        Ok(Config {
            listen,
            admin_listen,
            egress_listen,
            instance: raw.server.instance.unwrap_or_else(|| "ztai-1".into()),
            max_body_bytes,
            max_header_bytes,
            header_read_timeout: ms(
                "server.header_read_timeout_ms",
                raw.server.header_read_timeout_ms,
                10_000,
            )?,
            body_read_timeout: ms(
                "server.body_read_timeout_ms",
                raw.server.body_read_timeout_ms,
                30_000,
            )?,
            data_dir,
            policy_dir,
            policy_reload_interval: ms(
                "policy.reload_interval_ms",
                raw.policy.reload_interval_ms,
                1_000,
            )?,
            limits,
            inspect,
            audit,
            jwt_issuers,
            tokens,
            approvals,
            network_zones,
            catalogue,
            risk_half_life,
            tls,
            spiffe,
            upstreams,
            models,
            mcp,
        })
    }

    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("ztai.db")
    }

    /// The first zone (in file order) holding `ip` (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn zone_of(&self, ip: std::net::IpAddr) -> Option<&NetworkZone> {
        let ip = ip.to_canonical();
        self.network_zones
            .iter()
            .find(|z| z.ranges.iter().any(|r| r.contains(&ip)))
    }

    /// The pre-authentication limit that applies to `ip`: its zone's, or `[limits]`'s.
    pub fn failed_auth_limit(&self, ip: std::net::IpAddr) -> FailedAuthLimit {
        self.zone_of(ip)
            .and_then(|z| z.failed_auth)
            .unwrap_or(self.limits.failed_auth)
    }
}

impl UpstreamConfig {
    /// Reads the key now (at start, and again never: a rotated key needs a restart or reload).
    pub fn resolve_key(&self) -> Result<Option<String>, ConfigError> {
        let key = format!("upstreams.{}", self.name);
        match &self.key {
            UpstreamKey::None => Ok(None),
            UpstreamKey::Value(v) => Ok(Some(v.clone())),
            UpstreamKey::Env(var) => std::env::var(var)
                .map(|v| Some(v.trim().to_string()))
                .map_err(|_| {
                    err(
                        format!("{key}.api_key_env"),
                        format!("environment variable `{var}` is not set or not UTF-8"),
                    )
                }),
            UpstreamKey::File(path) => std::fs::read_to_string(path)
                .map(|v| Some(v.trim().to_string()))
                .map_err(|e| {
                    err(
                        format!("{key}.api_key_file"),
                        format!("cannot read `{}`: {e}", path.display()),
                    )
                }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[[upstreams]]
name = "local"
base_url = "http://127.0.0.1:9000/v1/"

[[models]]
name = "m"
upstream = "local"
groups = ["standard"]
"#;

    #[test]
    fn the_semantic_tier_defaults_to_auto_and_reads_its_keys() {
        let c = Config::parse(MINIMAL, Path::new("/etc/ztai")).unwrap();
        assert_eq!(c.inspect.semantic.mode, ztai_semantic::Mode::Auto);
        assert_eq!(c.inspect.semantic.band, ztai_inspect::DEFAULT_BAND);
        let c = Config::parse(
            &format!("{MINIMAL}\n[inspect.semantic]\nmode = \"off\"\ndir = \"enc\"\nband = 0.5"),
            Path::new("/etc/ztai"),
        )
        .unwrap();
        assert_eq!(
            c.inspect.semantic,
            SemanticConfig {
                mode: ztai_semantic::Mode::Off,
                dir: PathBuf::from("/etc/ztai/enc"),
                band: 0.5
            }
        );
    }

    #[test]
    fn a_minimal_file_gets_safe_defaults() {
        let c = Config::parse(MINIMAL, Path::new("/etc/ztai")).unwrap();
        assert_eq!(c.approvals.mode, ApprovalMode::Wait);
        assert_eq!(c.approvals.wait, Duration::from_secs(30));
        assert_eq!(c.approvals.webhook_url, None);
        assert!(c.approvals.require_approver_signature, "signed by default");
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.upstreams[0].base_url, "http://127.0.0.1:9000/v1");
        assert_eq!(c.models[0].upstream_model, "m");
        assert_eq!(c.policy_dir, PathBuf::from("/etc/ztai/policies"));
        assert_eq!(
            c.inspect.redact_output,
            vec![
                FindingCategory::Secret,
                FindingCategory::Pii,
                FindingCategory::Leak
            ]
        );
        assert_eq!(c.inspect.output_min_severity, Severity::Medium);
        assert!(!c.inspect.canary && c.inspect.link_allowlist.is_empty());
        assert_eq!(c.inspect.redaction, ztai_inspect::Replacement::Placeholder);
        assert_eq!(c.inspect.redaction_session_ttl, Duration::from_secs(3600));
    }

    fn error_of(text: &str) -> ConfigError {
        Config::parse(text, Path::new(".")).unwrap_err()
    }

    #[test]
    fn every_error_names_its_key() {
        let cases = [
            (
                format!("{MINIMAL}\n[inspect]\nredaction = \"shred\""),
                "inspect.redaction",
            ),
            (
                format!("{MINIMAL}\n[inspect]\nredaction_session_ttl_secs = 0"),
                "inspect.redaction_session_ttl_secs",
            ),
            (
                format!("{MINIMAL}\n[inspect]\nredaction_max_sessions = 0"),
                "inspect.redaction_max_sessions",
            ),
            (
                format!("{MINIMAL}\n[inspect.semantic]\nmode = \"sometimes\""),
                "inspect.semantic.mode",
            ),
            (
                format!("{MINIMAL}\n[inspect.semantic]\nband = 1.5"),
                "inspect.semantic.band",
            ),
            (
                format!("{MINIMAL}\n[server]\nlisten = \"nowhere\""),
                "server.listen",
            ),
            (
                MINIMAL.replace("upstream = \"local\"", "upstream = \"other\""),
                "models[0].upstream",
            ),
            (
                MINIMAL.replace("http://127.0.0.1:9000/v1/", "ftp://x"),
                "upstreams[0].base_url",
            ),
            (
                MINIMAL.replace("base_url", "api_key = \"sk-123\"\nbase_url"),
                "upstreams[0].api_key",
            ),
            (
                MINIMAL.replace(
                    "base_url",
                    "api_key_env = \"ZTAI_SURELY_UNSET_VAR\"\nbase_url",
                ),
                "upstreams[0].api_key_env",
            ),
            (
                format!("{MINIMAL}\n[inspect]\nredact_output = [\"emails\"]"),
                "inspect.redact_output",
            ),
            (
                format!("{MINIMAL}\n[inspect]\noutput_min_severity = \"severe\""),
                "inspect.output_min_severity",
            ),
            (
                format!("{MINIMAL}\n[[inspect.dictionaries]]\nname = \"codes\""),
                "inspect.dictionaries[0]",
            ),
            (
                format!(
                    "{MINIMAL}\n[[inspect.dictionaries]]\nname = \"Bad Name\"\nterms = [\"x\"]"
                ),
                "inspect.dictionaries[0]",
            ),
            (
                format!(
                    "{MINIMAL}\n[[inspect.dictionaries]]\nname = \"codes\"\nfile = \"/nonexistent/terms.txt\""
                ),
                "inspect.dictionaries[0].file",
            ),
            (
                format!("{MINIMAL}\n[limits]\nrequests_per_minute = 0"),
                "limits.requests_per_minute",
            ),
            (
                format!("{MINIMAL}\n[approvals]\nmode = \"hold\""),
                "approvals.mode",
            ),
            (
                format!("{MINIMAL}\n[[tools]]\nname = \"t\"\n[[tools]]\nname = \"t\""),
                "tools[1].name",
            ),
            (
                format!("{MINIMAL}\n[[documents]]\nname = \"d\"\nowner = \"alice\""),
                "documents[0].owner",
            ),
            (
                format!("{MINIMAL}\n[[documents]]\nname = \"d\"\nowner = \"robot:x\""),
                "documents[0].owner",
            ),
            (
                format!("{MINIMAL}\n[[documents]]\nname = \"d\"\nreaders = [\"a b\"]"),
                "documents[0].readers",
            ),
            (
                format!("{MINIMAL}\n[[documents]]\nname = \"d\"\nlabels = [\"\"]"),
                "documents[0].labels",
            ),
            (
                format!("{MINIMAL}\n[[documents]]\nname = \"d\"\nclassification = \"top\""),
                "documents[0].classification",
            ),
            (
                format!("{MINIMAL}\n[[destinations]]\ngroups = [\"x\"]"),
                "destinations[0].name",
            ),
            (
                format!(
                    "{MINIMAL}\n[[network_zones]]\nname = \"office\"\ncidrs = [\"10.0.0.0/33\"]"
                ),
                "network_zones[0].cidrs",
            ),
            (
                format!(
                    "{MINIMAL}\n[[network_zones]]\nname = \"unknown\"\ncidrs = [\"10.0.0.0/8\"]"
                ),
                "network_zones[0].name",
            ),
            (
                MINIMAL.replace(
                    "groups = [\"standard\"]",
                    "groups = [\"standard\"]\nclassification = \"secret\"",
                ),
                "models[0].classification",
            ),
            (
                format!("{MINIMAL}\n[approvals]\nsigned_decisions = \"no\""),
                "approvals.signed_decisions",
            ),
            (
                format!("{MINIMAL}\n[approvals]\nwait_secs = 301"),
                "approvals.wait_secs",
            ),
            (
                format!("{MINIMAL}\n[approvals]\nwait_secs = 0"),
                "approvals.wait_secs",
            ),
            (
                format!("{MINIMAL}\n[approvals]\nwebhook_url = \"http://chat.example/hook\""),
                "approvals.webhook_url",
            ),
            (
                format!("{MINIMAL}\n[audit]\npseudonymise = [\"users\"]"),
                "audit.pseudonymise",
            ),
            (
                format!("{MINIMAL}\n[audit]\ncheckpoint_every = 0"),
                "audit.checkpoint_every",
            ),
            (
                format!("{MINIMAL}\n[audit]\ncheckpoint_interval_ms = 0"),
                "audit.checkpoint_interval_ms",
            ),
            (
                format!("{MINIMAL}\n[[audit.export]]\nname = \"s\"\nkind = \"kafka\""),
                "audit.export[0].kind",
            ),
            (
                format!(
                    "{MINIMAL}\n[[identity.jwt]]\nissuer = \"i\"\naudiences = [\"ztai\"]\nalgorithms = [\"none\"]\njwks_file = \"Cargo.toml\""
                ),
                "identity.jwt[0].algorithms",
            ),
            (
                format!(
                    "{MINIMAL}\n[[identity.jwt]]\nissuer = \"i\"\naudiences = [\"ztai\"]\nalgorithms = [\"HS256\"]\njwks_file = \"Cargo.toml\""
                ),
                "identity.jwt[0].algorithms",
            ),
            (
                format!("{MINIMAL}\n[[identity.jwt]]\nissuer = \"i\"\njwks_file = \"Cargo.toml\""),
                "identity.jwt[0].audiences",
            ),
            (
                format!(
                    "{MINIMAL}\n[[identity.jwt]]\nissuer = \"i\"\naudiences = [\"a\"]\njwks_file = \"Cargo.toml\"\nleeway_secs = 3600"
                ),
                "identity.jwt[0].leeway_secs",
            ),
            (
                format!(
                    "{MINIMAL}\n[[identity.jwt]]\nissuer = \"i\"\naudiences = [\"a\"]\njwks_file = \"missing.json\""
                ),
                "identity.jwt[0].jwks_file",
            ),
            (
                format!(
                    "{MINIMAL}\n[[identity.jwt]]\nissuer = \"i\"\naudiences = [\"a\"]\njwks_url = \"http://idp.example.com/jwks\""
                ),
                "identity.jwt[0].jwks_url",
            ),
            (
                format!(
                    "{MINIMAL}\n[[identity.jwt]]\nissuer = \"i\"\naudiences = [\"a\"]\njwks_url = \"https://idp/jwks\"\njwks_file = \"Cargo.toml\""
                ),
                "identity.jwt[0].jwks_url",
            ),
            (
                format!(
                    "{MINIMAL}\n[[audit.export]]\nname = \"s\"\nkind = \"webhook\"\nurl = \"https://h/x\"\ntoken = \"abc\""
                ),
                "audit.export[0].token",
            ),
            (
                format!(
                    "{MINIMAL}\n[[audit.export]]\nname = \"s\"\nkind = \"syslog\"\naddress = \"h:514\"\nurl = \"https://h/x\""
                ),
                "audit.export[0].url",
            ),
            (
                format!(
                    "{MINIMAL}\n[[audit.export]]\nname = \"s\"\nkind = \"syslog\"\naddress = \"h:514\"\nca_file = \"ca.pem\""
                ),
                "audit.export[0].ca_file",
            ),
            (
                format!(
                    "{MINIMAL}\n[[audit.export]]\nname = \"s\"\nkind = \"syslog\"\naddress = \"no-port\""
                ),
                "audit.export[0].address",
            ),
            (
                format!(
                    "{MINIMAL}\n[[audit.export]]\nname = \"s\"\nkind = \"syslog\"\naddress = \"h:514\"\ntls = true\nca_file = \"missing.pem\""
                ),
                "audit.export[0].ca_file",
            ),
            (
                format!(
                    "{MINIMAL}\n[[audit.export]]\nname = \"s\"\nkind = \"file\"\npath = \"a.jsonl\"\nformat = \"xml\""
                ),
                "audit.export[0].format",
            ),
            (
                format!(
                    "{MINIMAL}\n[[audit.export]]\nname = \"s\"\nkind = \"file\"\npath = \"a.jsonl\"\nalert_backlog = 100\nmax_backlog = 10"
                ),
                "audit.export[0].max_backlog",
            ),
            (
                format!(
                    "{MINIMAL}\n[[audit.export]]\nname = \"s\"\nkind = \"file\"\npath = \"a\"\n[[audit.export]]\nname = \"s\"\nkind = \"file\"\npath = \"b\""
                ),
                "audit.export[1].name",
            ),
            (
                format!(
                    "{MINIMAL}\n[[audit.export]]\nname = \"bad name\"\nkind = \"file\"\npath = \"a\""
                ),
                "audit.export[0].name",
            ),
            (
                MINIMAL.replace(
                    "[[models]]\nname = \"m\"\nupstream = \"local\"\ngroups = [\"standard\"]",
                    "",
                ),
                "models",
            ),
            (
                format!("{MINIMAL}\n[server.tls]\nkey_file = \"Cargo.toml\""),
                "server.tls.cert_file",
            ),
            (
                format!("{MINIMAL}\n[identity.spiffe]\ntrust_domains = [\"prod.example\"]"),
                "identity.spiffe",
            ),
            (
                format!("{MINIMAL}\n[identity.spiffe]\ntrust_domains = [\"Prod:443\"]"),
                "identity.spiffe.trust_domains",
            ),
            (
                format!(
                    "{MINIMAL}\n[identity.spiffe]\ntrust_domains = [\"a.example\"]\n[[identity.spiffe.rules]]\nid = \"spiffe://b.example/x\"\nkind = \"service\""
                ),
                "identity.spiffe.rules[0].id",
            ),
            (
                format!(
                    "{MINIMAL}\n[identity.spiffe]\ntrust_domains = [\"a.example\"]\n[[identity.spiffe.rules]]\nid = \"spiffe://a.example/x\"\nkind = \"user\""
                ),
                "identity.spiffe.rules[0].kind",
            ),
            (
                format!("{MINIMAL}\n[identity.tokens]\nmax_ttl_secs = 0"),
                "identity.tokens.max_ttl_secs",
            ),
            (
                format!("{MINIMAL}\n[identity.risk]\nhalf_life_secs = 0"),
                "identity.risk.half_life_secs",
            ),
        ];
        for (text, key) in cases {
            let e = error_of(&text);
            assert!(
                !e.to_string().contains("abc"),
                "a token never appears in an error: {e}"
            );
            assert_eq!(e.key, key, "{e}");
        }
    }

    #[test]
    fn unknown_keys_and_wrong_types_are_refused_with_a_line() {
        let e = error_of(&format!("{MINIMAL}\n[server]\nlisten_addr = \"x\""));
        assert!(e.key.starts_with("line "), "{e}");
        assert!(e.message.contains("listen_addr"), "{e}");
        let e = error_of("[server]\nmax_body_bytes = \"big\"");
        assert!(e.to_string().contains("line 2"), "{e}");
    }

    #[test]
    fn the_documented_example_configuration_is_valid() {
        // The example names files and variables of a real deployment; stand in for them.
        let dir = tempfile::tempdir().unwrap();
        let jwks = dir.path().join("jwks.json");
        std::fs::write(&jwks, r#"{"keys": []}"#).unwrap();
        let text = include_str!("../../../examples/ztai.toml")
            .replace("api_key_env = \"OPENAI_API_KEY\"", "api_key_env = \"PATH\"")
            .replace("/etc/ztai/idp-jwks.json", jwks.to_str().unwrap());
        let c = Config::parse(&text, Path::new("/etc/ztai")).unwrap();
        assert_eq!(c.models.len(), 2);
        assert_eq!(
            c.models[1].upstream_model,
            "meta-llama/Llama-3.1-8B-Instruct"
        );
        assert_eq!(c.upstreams[0].key, UpstreamKey::Env("PATH".into()));
        assert_eq!(c.jwt_issuers[0].mapping.group_map["engineering"], "staff");
        assert_eq!(c.audit.export.len(), 2);
    }

    #[test]
    fn dictionaries_come_inline_or_from_files_next_to_the_config() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("codes.txt"),
            "# projects\nBlue Falcon\nNightjar\n",
        )
        .unwrap();
        let text = format!(
            "{MINIMAL}\n[inspect]\noutput_min_severity = \"low\"\n[[inspect.dictionaries]]\nname = \"codenames\"\nfile = \"codes.txt\"\n[[inspect.dictionaries]]\nname = \"topics\"\nseverity = \"medium\"\nterms = [\"layoffs\", \"merger\"]\n"
        );
        let c = Config::parse(&text, dir.path()).unwrap();
        assert_eq!(c.inspect.output_min_severity, Severity::Low);
        let d = &c.inspect.dictionaries;
        assert_eq!(d.len(), 2);
        assert_eq!(
            (d[0].name.as_str(), d[0].severity),
            ("codenames", Severity::High)
        );
        assert_eq!(d[0].terms, vec!["Blue Falcon", "Nightjar"]);
        assert_eq!(
            (d[1].name.as_str(), d[1].severity),
            ("topics", Severity::Medium)
        );
        assert_eq!(d[1].terms, vec!["layoffs", "merger"]);
        let default = Config::parse(MINIMAL, dir.path()).unwrap();
        assert_eq!(default.inspect.output_min_severity, Severity::Medium);
        assert!(default.inspect.dictionaries.is_empty());
    }

    #[test]
    fn keys_never_come_from_the_text_but_from_env_or_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("key"), "sk-from-file\n").unwrap();
        let text = MINIMAL.replace("base_url", "api_key_file = \"key\"\nbase_url");
        let c = Config::parse(&text, dir.path()).unwrap();
        assert_eq!(
            c.upstreams[0].resolve_key().unwrap().as_deref(),
            Some("sk-from-file")
        );
    }

    #[test]
    fn export_sinks_parse_with_defaults_and_tokens_from_files() {
        use ztai_audit::export::{ExportFormat, SinkTarget, TokenSource};
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("hec.token"), "t\n").unwrap();
        let text = format!(
            "{MINIMAL}\n[server]\ninstance = \"gw-7\"\n\
             [[audit.export]]\nname = \"siem\"\nkind = \"syslog\"\naddress = \"siem.example:6514\"\ntls = true\n\
             [[audit.export]]\nname = \"hec\"\nkind = \"webhook\"\nurl = \"https://splunk:8088/services/collector/event\"\ntoken_file = \"hec.token\"\n\
             [[audit.export]]\nname = \"files\"\nkind = \"file\"\npath = \"export/audit.jsonl\"\nformat = \"json\"\nstart = \"newest\"\n"
        );
        let c = Config::parse(&text, dir.path()).unwrap();
        let [siem, hec, files] = c.audit.export.as_slice() else {
            panic!("three sinks expected: {:?}", c.audit.export)
        };
        assert_eq!(siem.format, ExportFormat::Cef, "syslog defaults to CEF");
        match &siem.target {
            SinkTarget::Syslog(t) => {
                assert_eq!(t.facility, 13);
                assert_eq!(t.hostname, "gw-7");
                let tls = t.tls.as_ref().unwrap();
                assert_eq!(
                    tls.server_name, "siem.example",
                    "defaults to the address's host"
                );
                assert_eq!(tls.ca_file, None, "webpki roots");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(hec.format, ExportFormat::Ocsf);
        match &hec.target {
            SinkTarget::Webhook(t) => {
                assert_eq!(t.token, TokenSource::File(dir.path().join("hec.token")));
                assert_eq!(t.token.read().unwrap().as_deref(), Some("t"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(files.format, ExportFormat::Json);
        assert!(files.start_at_head);
        assert_eq!(
            (files.batch, files.alert_backlog, files.max_backlog),
            (500, 10_000, 10_000_000)
        );
        match &files.target {
            SinkTarget::File(t) => assert_eq!(t.path, dir.path().join("export/audit.jsonl")),
            other => panic!("{other:?}"),
        }
    }
}
