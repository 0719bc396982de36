//! The HTTP client that talks to model upstreams: pooled keep-alive connections, TLS through rustls
//! with the webpki roots, and a connect timeout. First-byte and idle timeouts are applied per
//! request by the proxy.

use crate::config::Config;
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

pub(crate) type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

pub(crate) fn build_client(config: &Config) -> Result<HttpClient, String> {
    let connect_timeout = config
        .upstreams
        .iter()
        .map(|u| u.connect_timeout)
        .max()
        .unwrap_or(std::time::Duration::from_secs(2));
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(std::time::Duration::from_secs(60))
        .pool_max_idle_per_host(256)
        .build(https))
}
