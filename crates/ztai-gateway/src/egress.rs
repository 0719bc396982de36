//! The egress proxy: agents' outbound HTTP calls go through the gateway, default deny.
//!
//! An HTTP forward proxy on its own listener (`[server] egress_listen`): plain HTTP requests in
//! absolute form (`GET http://host/path`) are forwarded, `CONNECT host:port` opens a tunnel (for
//! HTTPS, whose contents stay end to end). Every attempt is authenticated with the caller's own
//! credential (`Proxy-Authorization: Bearer …`, or Basic with the credential as password, which
//! is what `http://user:TOKEN@proxy` URLs send), decided by policy as `egress` on
//! `Destination::"<host>"` (in its `[[destinations]]` groups) with the port, method, path and the
//! address the host resolved to in the context, and recorded.
//!
//! The host is resolved once, before the decision, and the gateway connects to exactly that
//! address (a name that does not resolve is decided as 0.0.0.0, then answered 502 if permitted): a policy that refuses private ranges (`context.destination_ip.isInRange(…)`) cannot be
//! dodged by a name that resolves differently on a second lookup. A permit that needs a human
//! approval is refused here (a proxied call cannot wait for one; ask through `POST
//! /v1/authorize`).

use crate::error::GatewayError;
use crate::ids::new_request_id;
use crate::proxy::{Authenticated, authenticate, request_context};
use crate::record::{Trace, micros};
use crate::state::Gateway;
use axum::body::Body;
use axum::response::IntoResponse;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use ztai_core::{Action, Obligation, Resource};
use ztai_policy::Verdict;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_HOST_BYTES: usize = 253;

/// Headers that belong to one hop and are not forwarded.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "proxy-connection",
    "keep-alive",
    "proxy-authorization",
    "proxy-authenticate",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Serves the egress listener until `shutdown`.
pub(crate) async fn serve(
    gw: Arc<Gateway>,
    listener: TcpListener,
    shutdown: watch::Receiver<bool>,
) {
    crate::conn::accept_loop(listener, shutdown, move |stream, peer, mut stop| {
        let gw = gw.clone();
        async move {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let gw = gw.clone();
                async move {
                    let head = crate::pipeline::Head {
                        method: req.method().to_string(),
                        // The destination only: a URL's path and query may carry secrets.
                        route: req
                            .uri()
                            .authority()
                            .map(|a| a.to_string())
                            .unwrap_or_default(),
                        client: Some(peer),
                    };
                    let handler = handle(gw.clone(), peer, req);
                    Ok::<_, std::convert::Infallible>(
                        crate::pipeline::guarded(&gw, head, handler).await,
                    )
                }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .keep_alive(true);
            let conn = builder
                .serve_connection(TokioIo::new(stream), svc)
                .with_upgrades();
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => { let _ = r; }
                _ = stop.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        }
    })
    .await
}

/// Where a proxied request goes.
#[derive(Debug)]
struct Target {
    host: String,
    port: u16,
    /// Path and query for plain HTTP; empty for a tunnel.
    path: String,
}

fn target_of(req: &Request<Incoming>) -> Result<Target, GatewayError> {
    let uri = req.uri();
    let bad = |m: &str| GatewayError::BadRequest(m.to_string());
    let (host, port, path) = if req.method() == Method::CONNECT {
        let auth = uri
            .authority()
            .ok_or_else(|| bad("CONNECT needs host:port"))?;
        let port = auth
            .port_u16()
            .ok_or_else(|| bad("CONNECT needs an explicit port (host:443)"))?;
        (auth.host().to_string(), port, String::new())
    } else {
        if uri.scheme_str() != Some("http") {
            return Err(bad(
                "the egress proxy forwards absolute http:// URLs; use CONNECT for https",
            ));
        }
        let host = uri.host().ok_or_else(|| bad("the URL has no host"))?;
        let path = uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into());
        (host.to_string(), uri.port_u16().unwrap_or(80), path)
    };
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    if host.is_empty() || host.len() > MAX_HOST_BYTES || port == 0 {
        return Err(bad("the destination host or port is not valid"));
    }
    Ok(Target { host, port, path })
}

/// The caller's credential from `Proxy-Authorization`, as an `Authorization` header the
/// gateway's authentication understands.
fn proxy_credentials(headers: &HeaderMap) -> Result<HeaderMap, GatewayError> {
    use base64::Engine;
    let missing = || {
        GatewayError::Unauthenticated(
            "send your credential in Proxy-Authorization (Bearer <key or token>, or Basic with it as the password)".into(),
        )
    };
    let value = headers
        .get(header::PROXY_AUTHORIZATION)
        .ok_or_else(missing)?
        .to_str()
        .map_err(|_| missing())?;
    let token = if let Some(t) = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
    {
        t.trim().to_string()
    } else if let Some(b) = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))
    {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(b.trim())
            .map_err(|_| missing())?;
        let text = String::from_utf8(decoded).map_err(|_| missing())?;
        text.split_once(':')
            .map(|(_, pass)| pass.to_string())
            .ok_or_else(missing)?
    } else {
        return Err(missing());
    };
    let mut out = HeaderMap::new();
    out.insert(
        header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| missing())?,
    );
    Ok(out)
}

/// The address to connect to: the first the name resolves to.
async fn resolve(host: &str, port: u16) -> Result<SocketAddr, GatewayError> {
    let unreachable = GatewayError::UpstreamFailed;
    let found = tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((host, port)))
        .await
        .map_err(|_| unreachable(format!("resolving `{host}` timed out")))?
        .map_err(|e| unreachable(format!("cannot resolve `{host}`: {e}")))?
        .next();
    found.ok_or_else(|| unreachable(format!("`{host}` has no address")))
}

async fn handle(gw: Arc<Gateway>, peer: SocketAddr, req: Request<Incoming>) -> Response<Body> {
    let request_id = new_request_id();
    let mut trace = Trace::new(request_id.clone(), "egress");
    trace.client = peer.to_string();
    let result = decide_and_forward(&gw, req, &mut trace).await;
    let resp = match result {
        Ok(resp) => {
            trace.status = resp.status().as_u16();
            resp
        }
        Err(e) => {
            trace.status = match &e {
                GatewayError::Unauthenticated(_) => 407,
                other => other.status().as_u16(),
            };
            if trace.reason.is_empty() {
                trace.reason = e.message().to_string();
            }
            error_response(e)
        }
    };
    let ok = resp.status().is_success();
    let mut resp = match crate::proxy::record_request(&gw, "egress", trace).await {
        Ok(()) => resp,
        // Fail closed: an attempt that cannot be recorded is not carried out further.
        Err(e) if ok => error_response(GatewayError::AuditUnavailable(e.to_string())),
        Err(_) => resp,
    };
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

fn error_response(e: GatewayError) -> Response<Body> {
    if matches!(e, GatewayError::Unauthenticated(_)) {
        let mut resp = e.into_response();
        *resp.status_mut() = StatusCode::PROXY_AUTHENTICATION_REQUIRED;
        resp.headers_mut().remove(header::WWW_AUTHENTICATE);
        resp.headers_mut().insert(
            header::PROXY_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"ztai-egress\""),
        );
        return resp;
    }
    e.into_response()
}

async fn decide_and_forward(
    gw: &Arc<Gateway>,
    req: Request<Incoming>,
    trace: &mut Trace,
) -> Result<Response<Body>, GatewayError> {
    let target = target_of(&req)?;
    let resource = Resource::Destination(target.host.clone());
    trace.resource = resource.to_string();
    let t = Instant::now();
    let who: Authenticated = authenticate(gw, &proxy_credentials(req.headers())?, None)?;
    trace.timings.authenticate_us = micros(t);
    trace.principal = Some(who.principal.clone());

    // A name that does not resolve is still decided (as 0.0.0.0), so a destination policy
    // refuses is refused as such, not reported as unreachable.
    let resolved = resolve(&target.host, target.port).await;
    let t = Instant::now();
    let mut ctx = request_context(gw, "egress", &trace.client);
    ctx.risk_score = gw.observe_risk(&who.principal, std::iter::empty());
    ctx.destination_port = i64::from(target.port);
    ctx.destination_method = req.method().as_str().to_string();
    ctx.destination_path = target.path.clone();
    ctx.destination_ip = resolved
        .as_ref()
        .map(SocketAddr::ip)
        .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
    // What the caller's task has read through MCP (data-flow rules across channels).
    ctx.session_taint = crate::mcp::task_taint(gw, &who).await?;
    let entry = gw.catalogue_entry(&resource).unwrap_or_default();
    entry.facts().apply(&mut ctx);
    let verdict = gw.authorize(&who, Action::Egress, &resource, &entry.groups, &ctx)?;
    trace.timings.authorize_us = micros(t);
    let permit = match verdict {
        Verdict::Permit(p) => p,
        Verdict::Deny(d) => {
            let msg = format!(
                "egress to {}:{} is not allowed: {}",
                target.host,
                target.port,
                d.denial_message()
            );
            trace.reason = msg.clone();
            trace.decision = Some(d);
            return Err(GatewayError::Forbidden(msg));
        }
    };
    trace.decision = Some(permit.decision().clone());
    for o in &permit.decision().obligations {
        match o {
            Obligation::Approval { .. } => {
                return Err(GatewayError::Forbidden(format!(
                    "egress to {} needs a human approval, which a proxied call cannot wait for; ask with POST /v1/authorize and retry once approved",
                    target.host
                )));
            }
            Obligation::LogFull => {
                trace.content = Some(serde_json::json!({
                    "method": req.method().as_str(),
                    "destination": format!("{}:{}", target.host, target.port),
                    "path": target.path,
                }));
                trace.obligations_done.push(o.label());
            }
            // The proxy passes bytes it does not read (a tunnel is encrypted end to end), so
            // it cannot carry out a redaction; a permit that needs one is not carried out at all
            // rather than recorded as done.
            Obligation::Redact { .. } => {
                return Err(GatewayError::Forbidden(format!(
                    "egress to {} is permitted only with redaction, which the egress proxy cannot carry out on traffic it passes through; send the data through an inspected endpoint (/v1/authorize with the arguments) instead",
                    target.host
                )));
            }
        }
    }

    let addr = resolved?;
    let upstream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| GatewayError::UpstreamTimeout(format!("connecting to {addr} timed out")))?
        .map_err(|e| GatewayError::UpstreamFailed(format!("cannot connect to {addr}: {e}")))?;
    let _ = upstream.set_nodelay(true);

    if req.method() == Method::CONNECT {
        let upgrade = hyper::upgrade::on(req);
        tokio::spawn(async move {
            match upgrade.await {
                Ok(client) => {
                    let mut client = TokioIo::new(client);
                    let mut upstream = upstream;
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                }
                Err(e) => tracing::debug!(error = %e, "egress tunnel upgrade failed"),
            }
        });
        return Ok(Response::new(Body::empty()));
    }

    // Plain HTTP: the request in origin form, minus hop-by-hop headers and the credential, its
    // body bounded like any data-plane body (`server.max_body_bytes`).
    let max = gw.config.max_body_bytes;
    if req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|len| len > max as u64)
    {
        return Err(GatewayError::TooLarge(format!(
            "the request body is larger than the limit of {max} bytes"
        )));
    }
    let (mut parts, body) = req.into_parts();
    let body = http_body_util::Limited::new(body, max);
    let path: Uri = target
        .path
        .parse()
        .map_err(|_| GatewayError::BadRequest("the request path is not valid".into()))?;
    parts.uri = path;
    for h in HOP_BY_HOP {
        parts.headers.remove(h);
    }
    let host_value = if target.port == 80 {
        target.host.clone()
    } else {
        format!("{}:{}", target.host, target.port)
    };
    if let Ok(v) = HeaderValue::from_str(&host_value) {
        parts.headers.insert(header::HOST, v);
    }
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(upstream))
        .await
        .map_err(|e| GatewayError::UpstreamFailed(format!("{addr} did not speak HTTP: {e}")))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let answer = sender
        .send_request(Request::from_parts(parts, body))
        .await
        .map_err(|e| {
            // A chunked body that grew past the limit cuts the request off mid-way.
            if std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
            {
                GatewayError::TooLarge(format!(
                    "the request body is larger than the limit of {max} bytes"
                ))
            } else {
                GatewayError::UpstreamFailed(format!("{addr} failed to answer: {e}"))
            }
        })?;
    let (mut parts, body) = answer.into_parts();
    for h in HOP_BY_HOP {
        parts.headers.remove(h);
    }
    Ok(Response::from_parts(parts, Body::new(body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_credentials_accept_bearer_and_basic_and_refuse_the_rest() {
        use base64::Engine;
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(
                header::PROXY_AUTHORIZATION,
                HeaderValue::from_str(v).unwrap(),
            );
            proxy_credentials(&h)
        };
        let bearer = with("Bearer ztai_abc").unwrap();
        assert_eq!(bearer[header::AUTHORIZATION], "Bearer ztai_abc");
        let basic = base64::engine::general_purpose::STANDARD.encode("agent:ztai_xyz");
        let basic = with(&format!("Basic {basic}")).unwrap();
        assert_eq!(basic[header::AUTHORIZATION], "Bearer ztai_xyz");
        for bad in ["", "Digest x", "Basic !!!", "Basic bm9jb2xvbg=="] {
            assert!(with(bad).is_err(), "{bad}");
        }
        assert!(proxy_credentials(&HeaderMap::new()).is_err());
    }
}
