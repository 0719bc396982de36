//! What every request shares whatever its endpoint, applied once as a layer over both routers
//! rather than remembered by each handler.
//!
//! - **Detached.** hyper drops a handler's future when its client disconnects. A tool call, a
//!   key insert or an approval decision cut off between its effect and its audit record would
//!   leave an effect nobody can see, so every handler runs on its own task and finishes its work
//!   and its record whatever the client does.
//! - **Panics are answered and recorded.** A panic in a handler would otherwise end its task
//!   with no record and hyper would answer a bare 500. Here it becomes a `500 internal_error`
//!   with an `x-request-id`, a failure metric and a durable record naming the route and client.
//!   Handlers that hold a richer trace (the OpenAI endpoints) catch their own panics first and
//!   record that trace; this layer is the net under everything else.
//! - **Pre-authentication limit.** Failed credentials are counted per client address, and a
//!   limited address is refused before any handler runs (see `crate::preauth`).
//!
//! The data and admin routers take this as a layer (`detached`); the egress proxy, which is not
//! an axum router, calls `guarded` itself.

use crate::conn::ClientAddr;
use crate::error::GatewayError;
use crate::state::Gateway;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::FutureExt;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

/// The layer over both routers: `guarded` around the rest of the stack.
pub(crate) async fn detached(
    State(gw): State<Arc<Gateway>>,
    req: Request<Body>,
    next: Next,
) -> Response {
    let head = Head {
        method: req.method().to_string(),
        route: req.uri().path().to_string(),
        client: req.extensions().get::<ClientAddr>().map(|c| c.0),
    };
    guarded(&gw, head, next.run(req)).await
}

/// What the layer knows of a request before any handler reads it.
pub(crate) struct Head {
    pub method: String,
    pub route: String,
    pub client: Option<SocketAddr>,
}

/// Runs `handler` under the pre-authentication limit, on its own task, catching panics: the
/// one wrapper every listener's requests go through (the egress proxy calls it directly).
pub(crate) async fn guarded<F>(gw: &Arc<Gateway>, head: Head, handler: F) -> Response
where
    F: std::future::Future<Output = Response> + Send + 'static,
{
    let ip = head.client.map(|c| c.ip());
    if let Some(ip) = ip
        && let Err(e) = gw.preauth.admit(&gw.config, ip, Instant::now())
    {
        // Tallied, not recorded one by one: `preauth::summarise` writes one record per address.
        gw.metrics.fail("preauth_limit");
        return GatewayError::RateLimited {
            message: format!(
                "too many failed authentications from this address; retry after {} s",
                e.retry_after_secs
            ),
            retry_after_secs: e.retry_after_secs,
        }
        .into_response();
    }
    let task = tokio::spawn(AssertUnwindSafe(handler).catch_unwind());
    let panic = match task.await {
        Ok(Ok(resp)) => {
            // 401, or 407 from the egress proxy: a credential was presented and failed.
            if matches!(
                resp.status(),
                StatusCode::UNAUTHORIZED | StatusCode::PROXY_AUTHENTICATION_REQUIRED
            ) && let Some(ip) = ip
            {
                gw.preauth.failed(&gw.config, ip, Instant::now());
            }
            return resp;
        }
        Ok(Err(payload)) => panic_message(payload.as_ref()),
        // Only a runtime shutting down cancels a task; say so rather than pretend it panicked.
        Err(e) if e.is_cancelled() => "the request task was cancelled by shutdown".to_string(),
        Err(e) => panic_message(e.into_panic().as_ref()),
    };
    let client = head.client.map(|c| c.to_string()).unwrap_or_default();
    let id = record_panic(gw, &head.method, &head.route, &client, &panic).await;
    crate::proxy::with_request_id(panic_error().into_response(), &id)
}

/// The answer a client gets when its request panicked: nothing about the panic leaks.
pub(crate) fn panic_error() -> GatewayError {
    GatewayError::StageFailed {
        stage: crate::error::Stage::Gateway,
        message: "internal error; the request was refused and recorded".into(),
    }
}

/// How much of a panic's message is logged and recorded: enough to find the line, too little to
/// carry much of any request data a message might quote.
const PANIC_MESSAGE_CHARS: usize = 160;

/// The text of a panic payload (`panic!("…")` carries a `&str` or a `String`), shortened.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    let text = if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.as_str()
    } else {
        "a panic with no message"
    };
    text.chars().take(PANIC_MESSAGE_CHARS).collect()
}

/// Counts, logs and durably records a request that panicked; returns the record's id.
async fn record_panic(
    gw: &Gateway,
    method: &str,
    route: &str,
    client: &str,
    panic: &str,
) -> String {
    gw.metrics.fail("panic");
    tracing::error!(%method, %route, %client, panic = %panic, "a request handler panicked; answered 500 and recorded");
    let mut record = crate::record::system_record(
        &gw.config.instance,
        "request",
        &format!("Route::\"{method} {route}\""),
        ztai_core::Decision::Deny,
        format!("internal error: the handler panicked ({panic})"),
    );
    record.principal = "anonymous".into();
    record.chain = Vec::new();
    record.client = client.to_string();
    record.status = 500;
    let id = record.id.clone();
    if let Err(e) = gw.record(record).await {
        tracing::error!(error = %e, "could not record a panicked request");
    }
    id
}

#[cfg(test)]
mod tests;
