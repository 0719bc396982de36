//! The HTTP clients the gateway calls out with: pooled keep-alive connections, TLS through rustls
//! with the webpki roots, and a connect timeout. Each model upstream gets a client of its own so
//! its `connect_timeout_ms` holds for it alone (one shared client could only take one timeout for
//! all); webhooks, JWKS and MCP servers share one with the default timeout. First-byte and idle
//! timeouts are applied per request by the caller.

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::time::Duration;

pub(crate) type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The connect timeout of the shared client.
pub(crate) const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A client whose connections time out after `connect_timeout`.
pub(crate) fn build_client(connect_timeout: Duration) -> HttpClient {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(256)
        .build(https)
}
