//! Export of the audit log to SIEM/SOAR systems: OCSF, CEF or JSON events over RFC 5424 syslog
//! (TCP or TLS), a Splunk-HEC-compatible webhook, or rotated JSONL files.
//!
//! The audit log is the spool. Records are durable in the store before their answers are
//! released; each sink only reads them back in order and keeps a cursor (the last sequence number
//! it delivered) in the same store, moved forward only after its receiver accepted a batch. So
//! delivery is at least once across sink outages, retries and restarts, nothing on the request
//! path ever waits for a sink, and a dead sink costs no memory and no second copy on disk: its
//! backlog is the distance between the log's head and its cursor. That backlog is reported (and
//! alerted on past `alert_backlog`); past `max_backlog` the sink gives up the oldest records, says
//! which range it skipped, and leaves them in the log for a replay (`ztai audit export`).
//!
//! Retries back off exponentially with jitter up to `backoff_max`, so a receiver coming back is
//! not flooded by every gateway at once.

pub mod format;
mod ocsf;
mod sink;

pub use format::{
    EventKind, ExportFormat, FormatError, OCSF_VERSION, RenderedEvent, render, render_checkpoint,
};

use rand::Rng;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use ztai_store::AuditStore;

#[derive(Debug, Clone, thiserror::Error)]
pub enum ExportError {
    #[error("export is misconfigured: {0}")]
    Config(String),
    #[error("{0}")]
    Sink(String),
    #[error("the audit store could not be read for export: {0}")]
    Store(String),
}

/// Where a webhook's token comes from; never the configuration text itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    None,
    Env(String),
    File(PathBuf),
}

impl TokenSource {
    /// Reads the token now, so a rotated token is picked up without a restart.
    pub fn read(&self) -> Result<Option<String>, ExportError> {
        match self {
            TokenSource::None => Ok(None),
            TokenSource::Env(var) => std::env::var(var)
                .map(|t| Some(t.trim().to_string()))
                .map_err(|_| ExportError::Config(format!("the token variable `{var}` is not set"))),
            TokenSource::File(path) => std::fs::read_to_string(path)
                .map(|t| Some(t.trim().to_string()))
                .map_err(|e| {
                    ExportError::Config(format!(
                        "cannot read the token file `{}`: {e}",
                        path.display()
                    ))
                }),
        }
    }
}

/// TLS client settings for a receiver.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsTarget {
    /// PEM roots to trust; the webpki roots when absent.
    pub ca_file: Option<PathBuf>,
    /// Name the receiver's certificate must carry.
    pub server_name: String,
    /// Client certificate and key, for receivers that require mutual TLS.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileTarget {
    pub path: PathBuf,
    /// Rotate before a write would take the file past this size.
    pub rotate_bytes: u64,
    /// Rotated files kept (`.1` newest … `.keep` oldest).
    pub keep: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyslogTarget {
    /// `host:port` of the receiver.
    pub address: String,
    pub tls: Option<TlsTarget>,
    /// RFC 5424 facility (13, "log audit", by default).
    pub facility: u8,
    /// HOSTNAME field: how this gateway names itself to the receiver.
    pub hostname: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookTarget {
    pub url: http::Uri,
    pub token: TokenSource,
    /// HEC `host` field.
    pub host: String,
    /// HEC `index`, when the collector should not use the token's default.
    pub index: Option<String>,
    /// TLS settings for https URLs (`server_name` is unused: the URL's host is checked).
    pub tls: TlsTarget,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkTarget {
    File(FileTarget),
    Syslog(SyslogTarget),
    Webhook(WebhookTarget),
}

impl SinkTarget {
    pub fn kind(&self) -> &'static str {
        match self {
            SinkTarget::File(_) => "file",
            SinkTarget::Syslog(t) if t.tls.is_some() => "syslog+tls",
            SinkTarget::Syslog(_) => "syslog",
            SinkTarget::Webhook(_) => "webhook",
        }
    }
}

/// One configured export sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkConfig {
    /// Unique name; the key of the sink's cursor, so renaming a sink starts it afresh.
    pub name: String,
    pub target: SinkTarget,
    pub format: ExportFormat,
    /// Records per delivery.
    pub batch: usize,
    /// How often an idle sink looks for new records.
    pub poll: Duration,
    /// Bound on one delivery attempt.
    pub timeout: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// Backlog (records) from which the sink reports an alert.
    pub alert_backlog: u64,
    /// Backlog (records) past which the oldest undelivered records are skipped, down to half.
    pub max_backlog: u64,
    /// Where a sink without a cursor starts: the oldest record, or the log's head.
    pub start_at_head: bool,
}

/// How the exporter reports what it does; the gateway turns these into metrics, logs and
/// audit records. Calls are cheap and never block.
pub trait ExportObserver: Send + Sync + 'static {
    /// A batch was accepted by the receiver; `cursor` is the sink's new position.
    fn delivered(&self, sink: &str, records: u64, cursor: i64);
    /// A delivery attempt failed and will be retried after `retry_in`.
    fn failed(&self, sink: &str, error: &ExportError, retry_in: Duration);
    /// The sink's backlog after each look at the log.
    fn backlog(&self, sink: &str, records: u64, alerting: bool);
    /// Records `first..=last` were skipped because the backlog passed `max_backlog`.
    fn overflowed(&self, sink: &str, first: i64, last: i64);
    /// A record could not be rendered and was skipped.
    fn unrenderable(&self, sink: &str, error: &FormatError);
}

/// Starts one task per sink on the current runtime, reading the log through `store` (each read
/// on the blocking pool); they stop when `shutdown` turns true.
pub fn spawn_exporters(
    store: Arc<dyn AuditStore>,
    sinks: Vec<SinkConfig>,
    observer: Arc<dyn ExportObserver>,
    shutdown: watch::Receiver<bool>,
) -> Result<Vec<tokio::task::JoinHandle<()>>, ExportError> {
    let mut tasks = Vec::with_capacity(sinks.len());
    for config in sinks {
        let sink = sink::Sink::new(&config.target)?;
        let runner = Runner {
            config,
            sink,
            store: store.clone(),
            observer: observer.clone(),
            shutdown: shutdown.clone(),
        };
        tasks.push(tokio::spawn(runner.run()));
    }
    Ok(tasks)
}

struct Runner {
    config: SinkConfig,
    sink: sink::Sink,
    store: Arc<dyn AuditStore>,
    observer: Arc<dyn ExportObserver>,
    shutdown: watch::Receiver<bool>,
}

/// How a delivery attempt ended.
enum Attempt {
    Delivered,
    Stopped,
    Overflowing,
}

/// What one look at the log found.
struct Batch {
    head: i64,
    rows: Vec<(i64, String)>,
}

impl Runner {
    async fn with_store<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn AuditStore) -> Result<T, ztai_store::StoreError> + Send + 'static,
    ) -> Result<T, ExportError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(store.as_ref()))
            .await
            .map_err(|e| ExportError::Store(format!("store task stopped: {e}")))?
            .map_err(|e| ExportError::Store(e.to_string()))
    }

    /// Sleeps for `d` unless shutdown comes first; returns whether to stop.
    async fn pause(&mut self, d: Duration) -> bool {
        if *self.shutdown.borrow() {
            return true;
        }
        tokio::select! {
            _ = tokio::time::sleep(d) => false,
            _ = self.shutdown.changed() => true,
        }
    }

    async fn run(mut self) {
        let name = self.config.name.clone();
        let mut backoff = self.config.backoff_min;
        let cursor = loop {
            let (n, head_start) = (name.clone(), self.config.start_at_head);
            let r = self
                .with_store(move |s| {
                    Ok(match s.export_cursor(&n)? {
                        Some(c) => c,
                        None if head_start => s.audit_head()?.map_or(0, |(seq, _)| seq),
                        None => 0,
                    })
                })
                .await;
            match r {
                Ok(c) => break c,
                Err(e) => {
                    let wait = jittered(backoff);
                    self.observer.failed(&name, &e, wait);
                    backoff = (backoff * 2).min(self.config.backoff_max);
                    if self.pause(wait).await {
                        return;
                    }
                }
            }
        };
        let mut cursor = cursor;
        let mut persisted = true;
        // The largest checkpoint this run has sent; after a restart the latest is sent again.
        let mut sent_checkpoint = 0i64;
        loop {
            if *self.shutdown.borrow() {
                break;
            }
            let batch = self.config.batch;
            let batch = self
                .with_store(move |s| {
                    let head = s.audit_head()?.map_or(0, |(seq, _)| seq);
                    let rows = s
                        .audit_rows_after(cursor, batch)?
                        .into_iter()
                        .map(|r| (r.seq, r.record_json))
                        .collect();
                    Ok(Batch { head, rows })
                })
                .await;
            let Batch { head, rows } = match batch {
                Ok(b) => b,
                Err(e) => {
                    let wait = jittered(backoff);
                    self.observer.failed(&name, &e, wait);
                    backoff = (backoff * 2).min(self.config.backoff_max);
                    if self.pause(wait).await {
                        break;
                    }
                    continue;
                }
            };
            let backlog = u64::try_from(head.saturating_sub(cursor)).unwrap_or(0);
            self.observer
                .backlog(&name, backlog, backlog >= self.config.alert_backlog);
            if backlog > self.config.max_backlog {
                // Down to half the bound, so the overflow's own audit record (and a trickle of
                // traffic) does not overflow it again at once.
                let keep = i64::try_from(self.config.max_backlog / 2).unwrap_or(i64::MAX);
                let skip_to = head.saturating_sub(keep);
                self.observer.overflowed(&name, cursor + 1, skip_to);
                cursor = skip_to;
                persisted = false;
                continue;
            }
            let Some(&(last, _)) = rows.last() else {
                if !persisted && self.persist(cursor).await {
                    persisted = true;
                }
                if self
                    .send_checkpoint(cursor, &mut sent_checkpoint, &mut backoff)
                    .await
                {
                    break;
                }
                if self.pause(self.config.poll).await {
                    break;
                }
                continue;
            };
            let mut events = Vec::with_capacity(rows.len());
            for (seq, json) in &rows {
                match render(self.config.format, *seq, json) {
                    Ok(e) => events.push(e),
                    Err(e) => self.observer.unrenderable(&name, &e),
                }
            }
            let full = rows.len() >= self.config.batch;
            drop(rows);
            // Deliver this batch until it is accepted: the cursor never passes an undelivered record.
            if !events.is_empty() {
                match self
                    .deliver_until_accepted(&events, &mut backoff, cursor)
                    .await
                {
                    Attempt::Delivered => {}
                    Attempt::Stopped => break,
                    // Give up this batch: the next look at the log skips past it.
                    Attempt::Overflowing => continue,
                }
            }
            cursor = last;
            persisted = self.persist(cursor).await;
            self.observer
                .delivered(&name, u64::try_from(events.len()).unwrap_or(0), cursor);
            if self
                .send_checkpoint(cursor, &mut sent_checkpoint, &mut backoff)
                .await
            {
                break;
            }
            if !full && self.pause(self.config.poll).await {
                break;
            }
        }
        if !persisted {
            let _ = self.persist(cursor).await;
        }
    }

    /// Delivers `events` until the receiver accepts them, backing off between attempts and
    /// reporting the backlog while stuck so the alert fires during an outage; gives up when the
    /// backlog passes `max_backlog` (the caller then skips the oldest records) or at shutdown.
    async fn deliver_until_accepted(
        &mut self,
        events: &[RenderedEvent],
        backoff: &mut Duration,
        cursor: i64,
    ) -> Attempt {
        let name = self.config.name.clone();
        loop {
            match self
                .sink
                .deliver(events, self.config.format, self.config.timeout)
                .await
            {
                Ok(()) => {
                    *backoff = self.config.backoff_min;
                    return Attempt::Delivered;
                }
                Err(e) => {
                    let wait = jittered(*backoff);
                    self.observer.failed(&name, &e, wait);
                    *backoff = (*backoff * 2).min(self.config.backoff_max);
                    if let Ok(head) = self
                        .with_store(|s| Ok(s.audit_head()?.map_or(0, |(seq, _)| seq)))
                        .await
                    {
                        let backlog = u64::try_from(head.saturating_sub(cursor)).unwrap_or(0);
                        self.observer
                            .backlog(&name, backlog, backlog >= self.config.alert_backlog);
                        if backlog > self.config.max_backlog {
                            return Attempt::Overflowing;
                        }
                    }
                    if self.pause(wait).await {
                        return Attempt::Stopped;
                    }
                }
            }
        }
    }

    /// Sends the latest signed checkpoint once the sink has every record it covers (and it is
    /// newer than the last one sent). Returns whether shutdown came first.
    async fn send_checkpoint(
        &mut self,
        cursor: i64,
        sent: &mut i64,
        backoff: &mut Duration,
    ) -> bool {
        let latest = match self.with_store(|s| s.latest_checkpoint()).await {
            Ok(Some(c)) if c.tree_size > *sent && c.tree_size <= cursor => c,
            Ok(_) => return false,
            Err(e) => {
                self.observer.failed(&self.config.name, &e, Duration::ZERO);
                return false;
            }
        };
        match format::render_checkpoint(self.config.format, &latest) {
            Ok(event) => match self.deliver_until_accepted(&[event], backoff, cursor).await {
                Attempt::Delivered => {}
                Attempt::Stopped => return true,
                // Records come first; the checkpoint is offered again after them.
                Attempt::Overflowing => return false,
            },
            Err(e) => self.observer.unrenderable(&self.config.name, &e),
        }
        *sent = latest.tree_size;
        false
    }

    /// Stores the cursor; on failure the next batch stores it again (and a restart in between
    /// re-delivers, which at-least-once allows).
    async fn persist(&mut self, cursor: i64) -> bool {
        let name = self.config.name.clone();
        let at = humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string();
        match self
            .with_store(move |s| s.set_export_cursor(&name, cursor, &at))
            .await
        {
            Ok(()) => true,
            Err(e) => {
                self.observer.failed(&self.config.name, &e, Duration::ZERO);
                false
            }
        }
    }
}

/// `d` scaled by a random factor in [0.5, 1.0], so sinks that failed together retry apart.
fn jittered(d: Duration) -> Duration {
    let f: f64 = rand::rng().random_range(0.5..=1.0);
    d.mul_f64(f)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests;
