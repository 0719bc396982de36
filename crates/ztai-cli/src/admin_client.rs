//! A small client for the admin API, so control-plane commands (`ztai agents`, `ztai token
//! issue`, revocations) act on the running gateway, which applies each change at once and
//! records it, rather than writing to its store behind its back.

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// Where the admin API is and the credential to use.
#[derive(Debug, Clone, clap::Args)]
pub struct AdminArgs {
    /// The admin API's base URL (`ztai up` writes it to quickstart.env).
    #[arg(long, env = "ZTAI_ADMIN_URL", default_value = "http://127.0.0.1:8081")]
    pub admin_url: String,
    /// An administrator's credential.
    #[arg(long, env = "ZTAI_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: String,
}

impl AdminArgs {
    /// Sends one call and returns the JSON answer; a refusal becomes an error carrying the
    /// gateway's own message.
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.admin_url.trim_end_matches('/'));
        if !url.starts_with("http://") {
            anyhow::bail!(
                "the admin URL `{}` must start with http:// (the admin API listens on plain HTTP; reach it over a trusted network or a tunnel)",
                self.admin_url
            );
        }
        let request = hyper::Request::builder()
            .method(method)
            .uri(&url)
            .header(
                "authorization",
                format!("Bearer {}", self.admin_token.trim()),
            )
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(
                body.map(|b| b.to_string()).unwrap_or_default(),
            )))
            .with_context(|| format!("`{url}` is not a valid URL"))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (status, bytes) = runtime.block_on(async {
            let client = Client::builder(TokioExecutor::new()).build_http();
            let response = tokio::time::timeout(
                std::time::Duration::from_secs(30),
                client.request(request),
            )
            .await
            .with_context(|| format!("no answer from {url} within 30 s"))?
            .with_context(|| {
                format!("cannot reach the admin API at {url}; is the gateway running (`ztai up`)?")
            })?;
            let status = response.status();
            let bytes = response
                .into_body()
                .collect()
                .await
                .context("the admin API's answer was cut off")?
                .to_bytes();
            anyhow::Ok((status, bytes))
        })?;
        let json: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if !status.is_success() {
            let message = json
                .pointer("/error/message")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
            anyhow::bail!("the gateway refused ({status}): {message}");
        }
        Ok(json)
    }
}
