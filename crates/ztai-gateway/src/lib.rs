//! The ZTAI gateway: the policy enforcement point in front of OpenAI-compatible model APIs.
//!
//! Every data-plane request runs the same path — authenticate, limit, inspect input, authorise,
//! forward, inspect output, record — and any stage that fails refuses the request. The crate only
//! composes: credentials are checked by `ztai-identity`, content by `ztai-inspect`, decisions by
//! `ztai-policy`, records by `ztai-audit`; here live the HTTP edges, the upstream client, rate
//! limits, metrics and live policy reload.

pub mod admin;
mod approvals;
mod clock;
pub mod config;
mod conn;
mod decision_api;
pub mod delegation;
mod documents;
mod egress;
pub mod error;
mod export;
mod ids;
mod jwt;
pub mod limits;
pub mod mcp;
pub mod metrics;
mod model_gate;
mod pipeline;
mod preauth;
pub mod proxy;
mod record;
pub mod redaction;
mod retrieval;
mod semantic;
pub mod server;
pub mod sse;
mod state;
mod tokens;
mod upstream;

pub use config::{Config, ConfigError, ModelConfig, UpstreamConfig, UpstreamKey};
pub use error::{GatewayError, StartError};
pub use server::RunningGateway;
pub use state::Gateway;
