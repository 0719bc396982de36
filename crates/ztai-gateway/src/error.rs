//! Every way a data-plane request can fail, and the one place they become HTTP answers.
//!
//! Answers use the OpenAI error shape so existing SDKs raise the right exception class; the
//! `code` field is ours and stable, so clients and tests can tell the reasons apart.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayError {
    Unauthenticated(String),
    Forbidden(String),
    ModelNotFound(String),
    /// Malformed request (bad JSON, not UTF-8).
    BadRequest(String),
    /// Well-formed JSON of the wrong shape (missing field, wrong type).
    Unprocessable(String),
    TooLarge(String),
    RateLimited {
        message: String,
        retry_after_secs: u64,
    },
    RequestTimeout(String),
    /// A stage failed; the request is refused (fail closed).
    StageFailed {
        stage: Stage,
        message: String,
    },
    AuditUnavailable(String),
    UpstreamFailed(String),
    UpstreamTimeout(String),
    NotFound(String),
    Conflict(String),
    /// A registry-gated model has no version that may take traffic (quarantined, revoked…).
    ModelUnavailable(String),
}

/// The part of the gateway whose failure refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The gateway itself: encoding, a missing upstream, a panic.
    Gateway,
    /// Credential verification that could not run (a key set that cannot be read).
    Identity,
    /// A detector.
    Inspect,
    /// The policy engine.
    Policy,
    /// The store.
    Store,
    /// The audit log.
    Audit,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Gateway => "gateway",
            Stage::Identity => "identity",
            Stage::Inspect => "inspect",
            Stage::Policy => "policy",
            Stage::Store => "store",
            Stage::Audit => "audit",
        }
    }

    /// The stable `code` an answer carries for a failure of this stage.
    pub fn code(self) -> &'static str {
        match self {
            Stage::Inspect => "inspection_failed",
            Stage::Policy => "policy_failed",
            Stage::Store => "GatewayError::store",
            Stage::Gateway | Stage::Identity | Stage::Audit => "internal_error",
        }
    }
}

impl std::fmt::Display for GatewayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GatewayError::StageFailed { stage, message } => {
                write!(f, "{} failed: {message}", stage.as_str())
            }
            other => f.write_str(other.message()),
        }
    }
}

impl std::error::Error for GatewayError {}

impl GatewayError {
    /// The store failed: the request is refused (fail closed). The one constructor for it.
    pub fn store(e: impl std::fmt::Display) -> Self {
        GatewayError::StageFailed {
            stage: Stage::Store,
            message: format!("the store failed, so the request was refused: {e}"),
        }
    }

    /// A store error as the caller should see it: what was missing, in conflict or refused is
    /// the caller's to fix (404, 409); anything else is the store failing.
    pub fn from_store(e: ztai_store::StoreError) -> Self {
        match e {
            ztai_store::StoreError::NotFound(what) => {
                GatewayError::NotFound(format!("{what} not found"))
            }
            ztai_store::StoreError::Conflict(what) => {
                GatewayError::Conflict(format!("{what} already exists"))
            }
            ztai_store::StoreError::Refused(why) => GatewayError::Conflict(why),
            other => GatewayError::store(other),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            GatewayError::Forbidden(_) => StatusCode::FORBIDDEN,
            GatewayError::ModelNotFound(_) | GatewayError::NotFound(_) => StatusCode::NOT_FOUND,
            GatewayError::BadRequest(_) => StatusCode::BAD_REQUEST,
            GatewayError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            GatewayError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            GatewayError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            GatewayError::StageFailed { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            GatewayError::AuditUnavailable(_) | GatewayError::ModelUnavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            GatewayError::UpstreamFailed(_) => StatusCode::BAD_GATEWAY,
            GatewayError::UpstreamTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            GatewayError::Conflict(_) => StatusCode::CONFLICT,
        }
    }

    /// OpenAI's `type` field.
    pub fn error_type(&self) -> &'static str {
        match self {
            GatewayError::Unauthenticated(_) => "authentication_error",
            GatewayError::Forbidden(_) => "permission_error",
            GatewayError::ModelNotFound(_)
            | GatewayError::NotFound(_)
            | GatewayError::BadRequest(_)
            | GatewayError::Unprocessable(_)
            | GatewayError::TooLarge(_)
            | GatewayError::RequestTimeout(_)
            | GatewayError::Conflict(_) => "invalid_request_error",
            GatewayError::RateLimited { .. } => "rate_limit_error",
            GatewayError::StageFailed { .. }
            | GatewayError::AuditUnavailable(_)
            | GatewayError::ModelUnavailable(_) => "server_error",
            GatewayError::UpstreamFailed(_) | GatewayError::UpstreamTimeout(_) => "upstream_error",
        }
    }

    /// Our stable `code`.
    pub fn code(&self) -> &'static str {
        match self {
            GatewayError::Unauthenticated(_) => "invalid_api_key",
            GatewayError::Forbidden(_) => "policy_denied",
            GatewayError::ModelNotFound(_) => "model_not_found",
            GatewayError::NotFound(_) => "not_found",
            GatewayError::BadRequest(_) => "malformed_request",
            GatewayError::Unprocessable(_) => "invalid_request",
            GatewayError::TooLarge(_) => "request_too_large",
            GatewayError::RateLimited { .. } => "rate_limited",
            GatewayError::RequestTimeout(_) => "request_timeout",
            GatewayError::StageFailed { stage, .. } => stage.code(),
            GatewayError::AuditUnavailable(_) => "audit_unavailable",
            GatewayError::UpstreamFailed(_) => "upstream_failed",
            GatewayError::UpstreamTimeout(_) => "upstream_timeout",
            GatewayError::Conflict(_) => "conflict",
            GatewayError::ModelUnavailable(_) => "model_unavailable",
        }
    }

    pub fn message(&self) -> &str {
        match self {
            GatewayError::Unauthenticated(m)
            | GatewayError::Forbidden(m)
            | GatewayError::ModelNotFound(m)
            | GatewayError::NotFound(m)
            | GatewayError::BadRequest(m)
            | GatewayError::Unprocessable(m)
            | GatewayError::TooLarge(m)
            | GatewayError::RequestTimeout(m)
            | GatewayError::AuditUnavailable(m)
            | GatewayError::UpstreamFailed(m)
            | GatewayError::UpstreamTimeout(m)
            | GatewayError::Conflict(m)
            | GatewayError::ModelUnavailable(m) => m,
            GatewayError::RateLimited { message, .. } => message,
            GatewayError::StageFailed { message, .. } => message,
        }
    }

    /// The OpenAI error body.
    pub fn body(&self) -> serde_json::Value {
        json!({"error": {"message": self.message(), "type": self.error_type(), "param": null, "code": self.code()}})
    }
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        let mut resp = (self.status(), axum::Json(self.body())).into_response();
        if let GatewayError::RateLimited {
            retry_after_secs, ..
        } = &self
            && let Ok(v) = HeaderValue::from_str(&retry_after_secs.max(&1).to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        if matches!(self, GatewayError::Unauthenticated(_)) {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"ztai\""),
            );
        }
        resp
    }
}

/// Why the gateway could not start. Each names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("cannot create the data directory `{path}`: {message}")]
    DataDir { path: String, message: String },
    #[error("cannot open the store: {0}")]
    Store(#[from] ztai_store::StoreError),
    #[error("the policy set in `{dir}` is invalid, so the gateway will not start: {source}")]
    Policy {
        dir: String,
        #[source]
        source: ztai_policy::PolicyError,
    },
    #[error("cannot start the audit log: {0}")]
    Audit(#[from] ztai_audit::AuditError),
    #[error("cannot build the detectors: {0}")]
    Inspect(#[from] ztai_inspect::InspectError),
    #[error(
        "cannot load the semantic tier ({source}); fetch its weights with `ztai encoder fetch`, or set inspect.semantic.mode = \"off\""
    )]
    Semantic {
        #[source]
        source: ztai_semantic::SemanticError,
    },
    #[error("cannot listen on {addr}: {message}")]
    Bind { addr: String, message: String },
    #[error("cannot start audit export: {0}")]
    Export(ztai_audit::export::ExportError),
    #[error("cannot set up TLS on the data plane: {message}")]
    Tls { message: String },
    #[error(
        "cannot load the task token key `{path}`: {message}; restore it from backup, or move it aside to mint a new one (every token issued with the old key stops working)"
    )]
    TokenKey { path: String, message: String },
    #[error(
        "cannot load the key set of JWT issuer `{issuer}` from `{file}`: {message}; fix the source or remove the issuer"
    )]
    Jwks {
        issuer: String,
        file: String,
        message: String,
    },
}
