//! Listeners: the data plane and the admin plane, each an HTTP/1.1 server with bounded headers, a
//! header read timeout (slow-loris clients are cut off) and graceful shutdown.

use crate::conn::{ClientAddr, PeerIdentity, accept_loop};
use crate::error::StartError;
use crate::state::Gateway;
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

/// What a TLS listener needs: the acceptor, and the gateway to record refused handshakes.
#[derive(Clone)]
struct TlsContext {
    acceptor: tokio_rustls::TlsAcceptor,
    gw: Arc<Gateway>,
}

/// The data plane's rustls configuration: the gateway's certificate, and a client certificate
/// verifier over the configured trust bundle (chain and validity checked by webpki).
fn server_tls(
    cfg: &crate::config::ServerTlsConfig,
) -> Result<Arc<rustls::ServerConfig>, StartError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |what: &str, path: &std::path::Path, e: &dyn std::fmt::Display| StartError::Tls {
        message: format!("cannot read the {what} `{}`: {e}", path.display()),
    };
    let chain = CertificateDer::pem_file_iter(&cfg.cert_file)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| bad("certificate", &cfg.cert_file, &e))?;
    if chain.is_empty() {
        return Err(StartError::Tls {
            message: format!("`{}` holds no PEM certificate", cfg.cert_file.display()),
        });
    }
    let key = PrivateKeyDer::from_pem_file(&cfg.key_file)
        .map_err(|e| bad("private key", &cfg.key_file, &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| StartError::Tls {
            message: e.to_string(),
        })?;
    let builder = match &cfg.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(ca)
                .and_then(|i| i.collect::<Result<Vec<_>, _>>())
                .map_err(|e| bad("client CA bundle", ca, &e))?;
            for c in certs {
                roots.add(c).map_err(|e| bad("client CA bundle", ca, &e))?;
            }
            if roots.is_empty() {
                return Err(StartError::Tls {
                    message: format!("`{}` holds no PEM certificate", ca.display()),
                });
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            );
            let verifier = if cfg.require_client_cert {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            builder.with_client_cert_verifier(verifier.build().map_err(|e| StartError::Tls {
                message: format!("client certificate verifier: {e}"),
            })?)
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| StartError::Tls {
            message: format!("the certificate and key do not fit: {e}"),
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A started gateway: its bound addresses and the means to stop it.
#[derive(Debug)]
pub struct RunningGateway {
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    /// The egress proxy's address, when `[server] egress_listen` is set.
    pub egress_addr: Option<SocketAddr>,
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
        .route("/v1/tokens", post(crate::tokens::delegate))
        .route("/v1/reveal", post(crate::redaction::reveal))
        .route("/v1/approvals/{approval_id}", get(crate::approvals::poll))
        .route("/v1/authorize", post(crate::decision_api::authorize))
        .route("/v1/retrieval/authorize", post(crate::retrieval::authorize))
        .route(
            "/mcp/{server}",
            post(crate::mcp::post)
                .get(crate::mcp::get)
                .delete(crate::mcp::delete),
        )
        .route("/healthz", get(admin::healthz))
        .route("/readyz", get(admin::readyz))
        .fallback(proxy::not_found)
        .layer(axum::middleware::from_fn_with_state(
            gw.clone(),
            crate::pipeline::detached,
        ))
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
    let egress = match gw.config.egress_listen {
        Some(a) => {
            let l = bind(a).await?;
            let local = l.local_addr().map_err(|e| StartError::Bind {
                addr: a.to_string(),
                message: e.to_string(),
            })?;
            Some((l, local))
        }
        None => None,
    };
    let egress_addr = egress.as_ref().map(|(_, a)| *a);
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
        gw.store.clone(),
        gw.config.audit.export.clone(),
        reporter,
        rx.clone(),
    )
    .map_err(StartError::Export)?;
    let tls = match &gw.config.tls {
        Some(cfg) => Some(TlsContext {
            acceptor: tokio_rustls::TlsAcceptor::from(server_tls(cfg)?),
            gw: gw.clone(),
        }),
        None => None,
    };
    let mut tasks = vec![
        tokio::spawn(serve(
            data,
            data_router(gw.clone()),
            limits,
            tls,
            rx.clone(),
        )),
        tokio::spawn(serve(
            admin_l,
            admin::router(gw.clone()),
            limits,
            None,
            rx.clone(),
        )),
        tokio::spawn(gw.clone().watch_policies(rx.clone())),
        tokio::spawn(gw.clone().follow_revocations(rx.clone())),
        tokio::spawn(crate::preauth::summarise(gw.clone(), rx)),
    ];
    tasks.extend(exporters);
    if let Some((listener, _)) = egress {
        tasks.push(tokio::spawn(crate::egress::serve(
            gw.clone(),
            listener,
            tx.subscribe(),
        )));
    }
    Ok(RunningGateway {
        addr,
        admin_addr,
        egress_addr,
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
    tls: Option<TlsContext>,
    shutdown: watch::Receiver<bool>,
) {
    accept_loop(listener, shutdown, move |stream, peer, stop| {
        let router = router.clone();
        let tls = tls.clone();
        async move {
            match tls {
                None => serve_connection(stream, router, peer, None, limits, stop).await,
                Some(t) => {
                    // An address limited for failed authentications gets no handshake: the
                    // refusal is tallied, not recorded one by one.
                    if t.gw
                        .preauth
                        .admit(&t.gw.config, peer.ip(), std::time::Instant::now())
                        .is_err()
                    {
                        t.gw.metrics.fail("preauth_limit");
                        return;
                    }
                    // The handshake gets the header timeout too: a client that never finishes
                    // it is cut off like a slow-loris one.
                    let handshake =
                        tokio::time::timeout(limits.header_timeout, t.acceptor.accept(stream))
                            .await;
                    match handshake {
                        Ok(Ok(tls_stream)) => {
                            let cert = tls_stream
                                .get_ref()
                                .1
                                .peer_certificates()
                                .and_then(|c| c.first())
                                .map(|c| {
                                    PeerIdentity(Arc::new(
                                        ztai_identity::spiffe::PeerCertificate::from_der(c),
                                    ))
                                });
                            serve_connection(tls_stream, router, peer, cert, limits, stop).await
                        }
                        Ok(Err(e)) => refused_handshake(&t.gw, peer, e.to_string()).await,
                        Err(_) => {
                            refused_handshake(&t.gw, peer, "the TLS handshake timed out".into())
                                .await
                        }
                    }
                }
            }
        }
    })
    .await
}

/// Records a refused TLS handshake (a certificate from another CA, an expired one, no
/// certificate where one is required, not TLS at all): no HTTP request exists to answer, so the
/// audit record and the metric are what remain.
async fn refused_handshake(gw: &Gateway, peer: SocketAddr, message: String) {
    gw.metrics.fail("tls_handshake");
    gw.preauth
        .failed(&gw.config, peer.ip(), std::time::Instant::now());
    tracing::info!(client = %peer, error = %message, "TLS handshake refused");
    let mut record = crate::record::system_record(
        &gw.config.instance,
        "tls_handshake",
        "Api::\"data-plane\"",
        ztai_core::Decision::Deny,
        format!("TLS handshake refused: {message}"),
    );
    record.principal = "anonymous".into();
    record.chain = Vec::new();
    record.client = peer.to_string();
    if let Err(e) = gw.record(record).await {
        tracing::error!(error = %e, "could not record a refused TLS handshake");
    }
}

async fn serve_connection<S>(
    io: S,
    router: Router,
    peer: SocketAddr,
    cert: Option<PeerIdentity>,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = TowerToHyperService::new(router.map_request(
        move |mut req: http::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(ClientAddr(peer));
            if let Some(c) = &cert {
                req.extensions_mut().insert(c.clone());
            }
            req
        },
    ));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => { let _ = r; }
        _ = stop.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}
