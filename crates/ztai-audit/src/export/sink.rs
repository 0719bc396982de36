//! Transports: where rendered events go. Each sink delivers one batch or fails as a whole; the
//! exporter advances its cursor only past a batch its sink reported delivered.

use super::format::{self, ExportFormat, RenderedEvent};
use super::{ExportError, FileTarget, SinkTarget, SyslogTarget, TlsTarget, WebhookTarget};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// A connected (or connectable) sink.
pub(crate) enum Sink {
    File(FileSink),
    Syslog(SyslogSink),
    Webhook(Box<WebhookSink>),
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Sink::File(_) => "Sink::File",
            Sink::Syslog(_) => "Sink::Syslog",
            Sink::Webhook(_) => "Sink::Webhook",
        })
    }
}

impl Sink {
    pub(crate) fn new(target: &SinkTarget) -> Result<Self, ExportError> {
        Ok(match target {
            SinkTarget::File(t) => Sink::File(FileSink { target: t.clone() }),
            SinkTarget::Syslog(t) => Sink::Syslog(SyslogSink {
                tls: t.tls.as_ref().map(tls_connector).transpose()?,
                target: t.clone(),
                conn: None,
            }),
            SinkTarget::Webhook(t) => Sink::Webhook(Box::new(WebhookSink::new(t)?)),
        })
    }

    /// Delivers every event of the batch, or fails; `timeout` bounds the whole attempt.
    pub(crate) async fn deliver(
        &mut self,
        events: &[RenderedEvent],
        format: ExportFormat,
        timeout: Duration,
    ) -> Result<(), ExportError> {
        let attempt = async {
            match self {
                Sink::File(s) => {
                    let target = s.target.clone();
                    let lines: Vec<u8> = events.iter().fold(Vec::new(), |mut out, e| {
                        out.extend_from_slice(e.text.as_bytes());
                        out.push(b'\n');
                        out
                    });
                    tokio::task::spawn_blocking(move || append_rotating(&target, &lines))
                        .await
                        .map_err(|e| ExportError::Sink(format!("file writer stopped: {e}")))?
                }
                Sink::Syslog(s) => s.send(events, format).await,
                Sink::Webhook(s) => s.post(events, format).await,
            }
        };
        match tokio::time::timeout(timeout, attempt).await {
            Ok(r) => r,
            Err(_) => {
                if let Sink::Syslog(s) = self {
                    // A half-written frame must not be continued on the next attempt.
                    s.conn = None;
                }
                Err(ExportError::Sink(format!(
                    "the sink did not accept the batch within {} ms",
                    timeout.as_millis()
                )))
            }
        }
    }
}

// ---- rotated JSONL files ----------------------------------------------------------------------

pub(crate) struct FileSink {
    target: FileTarget,
}

fn rotated(path: &Path, n: usize) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// Appends `lines` to the file, rotating first when they would take it past `rotate_bytes`
/// (`audit.jsonl` → `audit.jsonl.1` → … → `.keep`, the oldest dropped), and syncs before it
/// returns so a delivered batch survives a crash.
pub(crate) fn append_rotating(target: &FileTarget, lines: &[u8]) -> Result<(), ExportError> {
    let io = |what: &str, path: &Path, e: std::io::Error| {
        ExportError::Sink(format!("cannot {what} `{}`: {e}", path.display()))
    };
    let path = &target.path;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| io("create the directory", dir, e))?;
    }
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let incoming = u64::try_from(lines.len()).unwrap_or(u64::MAX);
    if size > 0 && size.saturating_add(incoming) > target.rotate_bytes {
        let _ = std::fs::remove_file(rotated(path, target.keep));
        for n in (1..target.keep).rev() {
            let from = rotated(path, n);
            if from.exists() {
                std::fs::rename(&from, rotated(path, n + 1)).map_err(|e| io("rotate", &from, e))?;
            }
        }
        if target.keep > 0 {
            std::fs::rename(path, rotated(path, 1)).map_err(|e| io("rotate", path, e))?;
        } else {
            std::fs::remove_file(path).map_err(|e| io("remove", path, e))?;
        }
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| io("open", path, e))?;
    file.write_all(lines).map_err(|e| io("write", path, e))?;
    file.sync_data().map_err(|e| io("sync", path, e))?;
    Ok(())
}

// ---- RFC 5424 syslog over TCP and TLS ---------------------------------------------------------

enum SyslogConn {
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

pub(crate) struct SyslogSink {
    target: SyslogTarget,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    conn: Option<SyslogConn>,
}

fn tls_connector(t: &TlsTarget) -> Result<(TlsConnector, ServerName<'static>), ExportError> {
    let config = client_tls_config(t)?;
    let name = ServerName::try_from(t.server_name.clone()).map_err(|e| {
        ExportError::Config(format!("`{}` is not a TLS server name: {e}", t.server_name))
    })?;
    Ok((TlsConnector::from(Arc::new(config)), name))
}

/// A rustls client configuration: the CA file's roots (or the webpki roots when none is given),
/// and a client certificate when the receiver requires mutual TLS.
pub(crate) fn client_tls_config(t: &TlsTarget) -> Result<rustls::ClientConfig, ExportError> {
    let bad = |what: &str, path: &Path, e: &dyn std::fmt::Display| {
        ExportError::Config(format!("cannot read the {what} `{}`: {e}", path.display()))
    };
    let mut roots = rustls::RootCertStore::empty();
    match &t.ca_file {
        Some(ca) => {
            let certs = CertificateDer::pem_file_iter(ca)
                .map_err(|e| bad("CA file", ca, &e))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| bad("CA file", ca, &e))?;
            if certs.is_empty() {
                return Err(ExportError::Config(format!(
                    "the CA file `{}` holds no PEM certificate",
                    ca.display()
                )));
            }
            for c in certs {
                roots.add(c).map_err(|e| bad("CA file", ca, &e))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ExportError::Config(format!("TLS setup failed: {e}")))?
        .with_root_certificates(roots);
    match (&t.cert_file, &t.key_file) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .map_err(|e| bad("client certificate", cert, &e))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| bad("client certificate", cert, &e))?;
            let key_der =
                PrivateKeyDer::from_pem_file(key).map_err(|e| bad("client key", key, &e))?;
            builder.with_client_auth_cert(chain, key_der).map_err(|e| {
                ExportError::Config(format!("the client certificate and key do not fit: {e}"))
            })
        }
        _ => Ok(builder.with_no_client_auth()),
    }
}

impl SyslogSink {
    async fn connect(&self) -> Result<SyslogConn, ExportError> {
        let tcp = TcpStream::connect(&self.target.address)
            .await
            .map_err(|e| {
                ExportError::Sink(format!(
                    "cannot connect to syslog receiver `{}`: {e}",
                    self.target.address
                ))
            })?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => Ok(SyslogConn::Tcp(tcp)),
            Some((connector, name)) => {
                let tls = connector.connect(name.clone(), tcp).await.map_err(|e| {
                    ExportError::Sink(format!(
                        "TLS handshake with syslog receiver `{}` failed: {e}",
                        self.target.address
                    ))
                })?;
                Ok(SyslogConn::Tls(Box::new(tls)))
            }
        }
    }

    /// A syslog receiver never talks back; a readable socket means it closed (or reset) the
    /// connection, so the batch goes over a new one instead of into a dead socket.
    async fn peer_closed(conn: &SyslogConn) -> bool {
        let tcp = match conn {
            SyslogConn::Tcp(s) => s,
            SyslogConn::Tls(s) => s.get_ref().0,
        };
        let mut probe = [0u8; 1];
        tokio::time::timeout(Duration::ZERO, tcp.peek(&mut probe))
            .await
            .is_ok()
    }

    async fn send(
        &mut self,
        events: &[RenderedEvent],
        format: ExportFormat,
    ) -> Result<(), ExportError> {
        let mut frames = Vec::with_capacity(events.len() * 512);
        for e in events {
            let message =
                format::syslog_message(e, self.target.facility, &self.target.hostname, format);
            format::frame_octet_counted(&message, &mut frames);
        }
        if let Some(conn) = &self.conn
            && Self::peer_closed(conn).await
        {
            self.conn = None;
        }
        let mut conn = match self.conn.take() {
            Some(c) => c,
            None => self.connect().await?,
        };
        let written = match &mut conn {
            SyslogConn::Tcp(s) => write_all_flush(s, &frames).await,
            SyslogConn::Tls(s) => write_all_flush(s.as_mut(), &frames).await,
        };
        written.map_err(|e| {
            ExportError::Sink(format!(
                "syslog receiver `{}` write failed: {e}",
                self.target.address
            ))
        })?;
        self.conn = Some(conn);
        Ok(())
    }
}

async fn write_all_flush<W: tokio::io::AsyncWrite + Unpin>(
    w: &mut W,
    bytes: &[u8],
) -> std::io::Result<()> {
    w.write_all(bytes).await?;
    w.flush().await
}

// ---- Splunk HEC compatible webhook ------------------------------------------------------------

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

pub(crate) struct WebhookSink {
    target: WebhookTarget,
    client: HttpsClient,
}

impl WebhookSink {
    fn new(t: &WebhookTarget) -> Result<Self, ExportError> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(Duration::from_secs(5)));
        let tls = client_tls_config(&t.tls)?;
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Ok(WebhookSink {
            target: t.clone(),
            client: Client::builder(TokioExecutor::new()).build(https),
        })
    }

    async fn post(
        &mut self,
        events: &[RenderedEvent],
        format: ExportFormat,
    ) -> Result<(), ExportError> {
        let mut body = String::with_capacity(events.len() * 600);
        for e in events {
            body.push_str(&format::hec_event(
                e,
                format,
                &self.target.host,
                self.target.index.as_deref(),
            ));
            body.push('\n');
        }
        let mut req = http::Request::post(self.target.url.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(
                http::header::USER_AGENT,
                concat!("ztai/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(token) = self.target.token.read()? {
            req = req.header(http::header::AUTHORIZATION, format!("Splunk {token}"));
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| ExportError::Sink(format!("cannot build the webhook request: {e}")))?;
        let resp = self.client.request(req).await.map_err(|e| {
            ExportError::Sink(format!("webhook `{}` unreachable: {e}", self.target.url))
        })?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        if !status.is_success() {
            let text =
                String::from_utf8_lossy(bytes.get(..bytes.len().min(200)).unwrap_or_default());
            return Err(ExportError::Sink(format!(
                "webhook `{}` answered {status}: {text}",
                self.target.url
            )));
        }
        // HEC answers {"text":"Success","code":0}; a non-zero code is a rejection even on 200.
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes)
            && let Some(code) = v.get("code").and_then(serde_json::Value::as_i64)
            && code != 0
        {
            return Err(ExportError::Sink(format!(
                "webhook `{}` rejected the batch (code {code}: {})",
                self.target.url,
                v.get("text")
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or("no reason given")
            )));
        }
        Ok(())
    }
}
