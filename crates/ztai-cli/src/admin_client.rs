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
    /// Sends one call to the admin API and returns the JSON answer.
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        if !self.admin_url.starts_with("http://") {
            anyhow::bail!(
                "the admin URL `{}` must start with http:// (the admin API listens on plain HTTP; reach it over a trusted network or a tunnel)",
                self.admin_url
            );
        }
        call(&self.admin_url, &self.admin_token, method, path, body)
    }
}

/// Where the data plane is and the user's own credential.
#[derive(Debug, Clone, clap::Args)]
pub struct UserArgs {
    /// The gateway's OpenAI-compatible base URL (`ztai up` writes it to quickstart.env).
    #[arg(
        long,
        env = "OPENAI_BASE_URL",
        default_value = "http://127.0.0.1:8080/v1"
    )]
    pub gateway_url: String,
    /// Your own credential: an API key or your identity provider's JWT.
    #[arg(long, env = "ZTAI_API_KEY", hide_env_values = true)]
    pub api_key: String,
}

impl UserArgs {
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        if !self.gateway_url.starts_with("http://") {
            anyhow::bail!(
                "the gateway URL `{}` must start with http:// for this command",
                self.gateway_url
            );
        }
        call(&self.gateway_url, &self.api_key, method, path, body)
    }
}

/// Sends one JSON call with a bearer credential; a refusal becomes an error carrying the
/// gateway's own message.
fn call(
    base: &str,
    credential: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> anyhow::Result<Value> {
    let url = format!("{}{path}", base.trim_end_matches('/'));
    let request = hyper::Request::builder()
        .method(method)
        .uri(&url)
        .header("authorization", format!("Bearer {}", credential.trim()))
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
        let response =
            tokio::time::timeout(std::time::Duration::from_secs(30), client.request(request))
                .await
                .with_context(|| format!("no answer from {url} within 30 s"))?
                .with_context(|| {
                    format!(
                        "cannot reach the admin API at {url}; is the gateway running (`ztai up`)?"
                    )
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
