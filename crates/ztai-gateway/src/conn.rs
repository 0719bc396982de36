//! What the listeners know of a connection, and the accept loop they share: kept apart from
//! `server` (which builds the routers and so imports every handler) so that handlers can name
//! their caller without importing the module that imports them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The caller's socket address, put on every request of a connection so the audit record can
/// name where a request came from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientAddr(pub SocketAddr);

impl ClientAddr {
    /// `ip:port` of the caller, or empty when the request did not come through a listener.
    pub(crate) fn of(ext: &http::Extensions) -> String {
        ext.get::<ClientAddr>()
            .map(|c| c.0.to_string())
            .unwrap_or_default()
    }
}

/// The verified client certificate of a TLS connection, put on each of its requests.
#[derive(Debug, Clone)]
pub(crate) struct PeerIdentity(pub Arc<ztai_identity::spiffe::PeerCertificate>);

/// Accepts connections until `shutdown`, running `on_connection` for each on its own task, then
/// waits for the open ones to finish (each must watch `shutdown` itself to close gracefully).
pub(crate) async fn accept_loop<F, Fut>(
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
    mut on_connection: F,
) where
    F: FnMut(tokio::net::TcpStream, SocketAddr, watch::Receiver<bool>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => break,
        };
        let (stream, peer) = match accepted {
            Ok(s) => s,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        conns.spawn(on_connection(stream, peer, shutdown.clone()));
        // Reap finished connections so the set does not grow without bound.
        while conns.try_join_next().is_some() {}
    }
    while conns.join_next().await.is_some() {}
}
