//! Listeners: the data plane and the admin plane, each an HTTP/1.1 server with bounded headers, a
//! header read timeout (slow-loris clients are cut off) and graceful shutdown.

use crate::state::{Gateway, StartError};
use crate::{admin, proxy};
use axum::Router;
use axum::routing::{get, post};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tower::ServiceExt;

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

/// A started gateway: its bound addresses and the means to stop it.
#[derive(Debug)]
pub struct RunningGateway {
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub gateway: Arc<Gateway>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningGateway {
    /// Stops accepting, lets in-flight requests finish (up to `grace`), and returns.
    pub async fn shutdown(self, grace: Duration) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = tokio::time::timeout(grace, t).await;
        }
    }
}

pub fn data_router(gw: Arc<Gateway>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(proxy::chat))
        .route("/v1/completions", post(proxy::completions))
        .route("/v1/embeddings", post(proxy::embeddings))
        .route("/v1/models", get(proxy::list_models))
        .route("/healthz", get(admin::healthz))
        .route("/readyz", get(admin::readyz))
        .fallback(proxy::not_found)
        .with_state(gw)
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr).await.map_err(|e| StartError::Bind {
        addr: addr.to_string(),
        message: format!(
            "{e}; choose another address with --listen / --admin-listen (port 0 picks a free one)"
        ),
    })
}

/// Binds both listeners and starts serving, plus the policy watcher.
pub async fn start(gw: Arc<Gateway>) -> Result<RunningGateway, StartError> {
    let data = bind(gw.config.listen).await?;
    let admin_l = bind(gw.config.admin_listen).await?;
    let addr = data.local_addr().map_err(|e| StartError::Bind {
        addr: gw.config.listen.to_string(),
        message: e.to_string(),
    })?;
    let admin_addr = admin_l.local_addr().map_err(|e| StartError::Bind {
        addr: gw.config.admin_listen.to_string(),
        message: e.to_string(),
    })?;
    let (tx, rx) = watch::channel(false);
    let limits = Limits {
        header_timeout: gw.config.header_read_timeout,
        max_header_bytes: gw.config.max_header_bytes,
    };
    let reporter = std::sync::Arc::new(crate::export::ExportReporter::new(
        gw.metrics.export.clone(),
        gw.audit.clone(),
        gw.config.instance.clone(),
    ));
    let exporters = ztai_audit::export::spawn_exporters(
        gw.config.db_path(),
        gw.config.audit.export.clone(),
        reporter,
        rx.clone(),
    )
    .map_err(StartError::Export)?;
    let mut tasks = vec![
        tokio::spawn(serve(data, data_router(gw.clone()), limits, rx.clone())),
        tokio::spawn(serve(
            admin_l,
            admin::router(gw.clone()),
            limits,
            rx.clone(),
        )),
        tokio::spawn(gw.clone().watch_policies(rx.clone())),
        tokio::spawn(gw.clone().follow_revocations(rx)),
    ];
    tasks.extend(exporters);
    Ok(RunningGateway {
        addr,
        admin_addr,
        gateway: gw,
        shutdown: tx,
        tasks,
    })
}

#[derive(Debug, Clone, Copy)]
struct Limits {
    header_timeout: Duration,
    max_header_bytes: usize,
}

async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
) {
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
        let svc = TowerToHyperService::new(router.clone().map_request(
            move |mut req: http::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ClientAddr(peer));
                req
            },
        ));
        let mut stop = shutdown.clone();
        conns.spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .max_buf_size(limits.max_header_bytes.max(8192))
                .keep_alive(true);
            let conn = builder.serve_connection(TokioIo::new(stream), svc);
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => { let _ = r; }
                _ = stop.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
        // Reap finished connections so the set does not grow without bound.
        while conns.try_join_next().is_some() {}
    }
    while conns.join_next().await.is_some() {}
}
