//! The gateway's side of SIEM export: starting one exporter per configured sink and turning what
//! they report into metrics, logs and — for records a sink gave up on — audit records, so a gap in
//! what the SIEM received is itself on the record.

use crate::metrics::{ExportMetrics, SinkLabel, SinkSkip};
use crate::record::system_record;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use ztai_audit::AuditLog;
use ztai_audit::export::{ExportError, ExportObserver, FormatError};
use ztai_core::Decision;

#[derive(Debug)]
pub(crate) struct ExportReporter {
    pub metrics: ExportMetrics,
    pub audit: AuditLog,
    pub instance: String,
    /// Sinks whose backlog is over their alert threshold, so the log says when it starts and ends.
    alerting: Mutex<HashMap<String, bool>>,
}

impl ExportReporter {
    pub fn new(metrics: ExportMetrics, audit: AuditLog, instance: String) -> Self {
        ExportReporter {
            metrics,
            audit,
            instance,
            alerting: Mutex::new(HashMap::new()),
        }
    }

    fn label(sink: &str) -> SinkLabel {
        SinkLabel {
            sink: sink.to_string(),
        }
    }
}

impl ExportObserver for ExportReporter {
    fn delivered(&self, sink: &str, records: u64, cursor: i64) {
        let l = Self::label(sink);
        self.metrics.delivered.get_or_create(&l).inc_by(records);
        self.metrics.cursor.get_or_create(&l).set(cursor);
        tracing::debug!(sink, records, cursor, "audit records exported");
    }

    fn failed(&self, sink: &str, error: &ExportError, retry_in: Duration) {
        self.metrics
            .failures
            .get_or_create(&Self::label(sink))
            .inc();
        tracing::warn!(sink, error = %error, retry_in_ms = retry_in.as_millis() as u64, "audit export failed; retrying");
    }

    fn backlog(&self, sink: &str, records: u64, alerting: bool) {
        let l = Self::label(sink);
        self.metrics
            .backlog
            .get_or_create(&l)
            .set(i64::try_from(records).unwrap_or(i64::MAX));
        self.metrics
            .alert
            .get_or_create(&l)
            .set(i64::from(alerting));
        let mut state = self.alerting.lock().unwrap_or_else(|p| p.into_inner());
        let was = state.insert(sink.to_string(), alerting).unwrap_or(false);
        if alerting && !was {
            tracing::error!(
                sink,
                backlog = records,
                "audit export backlog passed its alert threshold; the SIEM is falling behind"
            );
        } else if was && !alerting {
            tracing::info!(
                sink,
                backlog = records,
                "audit export backlog back under its alert threshold"
            );
        }
    }

    fn overflowed(&self, sink: &str, first: i64, last: i64) {
        let skipped = u64::try_from(last - first + 1).unwrap_or(0);
        self.metrics
            .skipped
            .get_or_create(&SinkSkip {
                sink: sink.to_string(),
                reason: "overflow",
            })
            .inc_by(skipped);
        tracing::error!(
            sink,
            first,
            last,
            "audit export backlog passed max_backlog; the oldest records were skipped for this sink and stay in the log for replay"
        );
        let record = system_record(
            &self.instance,
            "audit_export_overflow",
            &format!("Sink::\"{sink}\""),
            Decision::Deny,
            format!(
                "sink `{sink}` skipped audit records {first}..={last} after its backlog passed max_backlog; replay them with `ztai audit export --after {}`",
                first - 1
            ),
        );
        let audit = self.audit.clone();
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                if let Err(e) = audit.append(record).await {
                    tracing::error!(error = %e, "could not record an export overflow");
                }
            });
        }
    }

    fn unrenderable(&self, sink: &str, error: &FormatError) {
        self.metrics
            .skipped
            .get_or_create(&SinkSkip {
                sink: sink.to_string(),
                reason: "unrenderable",
            })
            .inc();
        tracing::error!(sink, error = %error, "an audit record could not be exported; run `ztai audit verify`");
    }
}
