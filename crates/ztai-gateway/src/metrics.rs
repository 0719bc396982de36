//! Prometheus metrics for the gateway.
//!
//! Label sets are small and closed (routes, outcomes, categories, stages) so cardinality stays
//! bounded whatever clients send.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteStatus {
    pub route: &'static str,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FindingLabels {
    pub category: &'static str,
    pub channel: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Stage {
    pub stage: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Component {
    pub component: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SinkLabel {
    pub sink: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SinkSkip {
    pub sink: String,
    pub reason: &'static str,
}

/// SIEM export metrics, per configured sink (names come from the configuration, so the label
/// set is closed).
#[derive(Debug, Clone, Default)]
pub struct ExportMetrics {
    pub delivered: Family<SinkLabel, Counter>,
    pub failures: Family<SinkLabel, Counter>,
    pub backlog: Family<SinkLabel, Gauge>,
    pub alert: Family<SinkLabel, Gauge>,
    pub cursor: Family<SinkLabel, Gauge>,
    pub skipped: Family<SinkSkip, Counter>,
}

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub requests: Family<RouteStatus, Counter>,
    pub decisions: Family<Outcome, Counter>,
    pub findings: Family<FindingLabels, Counter>,
    pub stage_seconds: Family<Stage, Histogram, fn() -> Histogram>,
    pub request_seconds: Histogram,
    pub failures: Family<Component, Counter>,
    pub streams_active: Gauge,
    pub policy_reloads: Family<Outcome, Counter>,
    /// Approval tickets: requested, approved, denied.
    pub approvals: Family<Outcome, Counter>,
    pub export: ExportMetrics,
    /// Handles to the per-stage histograms, resolved once so the hot path skips the family's
    /// lock and label hashing.
    stages: Vec<Histogram>,
}

/// The request stages whose time `ztai_stage_duration_seconds{stage}` observes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimedStage {
    Authenticate,
    Limit,
    InspectInput,
    Authorize,
    InspectOutput,
    Record,
}

impl TimedStage {
    /// Every stage, in the order of `stages` (a stage's histogram is at its position here).
    pub const ALL: [TimedStage; 6] = [
        TimedStage::Authenticate,
        TimedStage::Limit,
        TimedStage::InspectInput,
        TimedStage::Authorize,
        TimedStage::InspectOutput,
        TimedStage::Record,
    ];

    /// The `stage` label.
    pub fn as_str(self) -> &'static str {
        match self {
            TimedStage::Authenticate => "authenticate",
            TimedStage::Limit => "limit",
            TimedStage::InspectInput => "inspect_input",
            TimedStage::Authorize => "authorize",
            TimedStage::InspectOutput => "inspect_output",
            TimedStage::Record => "record",
        }
    }
}

fn stage_histogram() -> Histogram {
    // 1 µs … ~16 s
    Histogram::new(exponential_buckets(1e-6, 4.0, 13))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("ztai");
        let requests = Family::<RouteStatus, Counter>::default();
        let decisions = Family::<Outcome, Counter>::default();
        let findings = Family::<FindingLabels, Counter>::default();
        let stage_seconds =
            Family::<Stage, Histogram, fn() -> Histogram>::new_with_constructor(stage_histogram);
        let request_seconds = stage_histogram();
        let failures = Family::<Component, Counter>::default();
        let streams_active = Gauge::default();
        let policy_reloads = Family::<Outcome, Counter>::default();
        let approvals = Family::<Outcome, Counter>::default();
        registry.register(
            "approvals",
            "Requests held for human approval, and decisions, by outcome",
            approvals.clone(),
        );
        registry.register(
            "requests",
            "Data-plane requests by route and status",
            requests.clone(),
        );
        registry.register(
            "decisions",
            "Policy decisions by outcome",
            decisions.clone(),
        );
        registry.register(
            "findings",
            "Inspection findings by category and channel",
            findings.clone(),
        );
        registry.register(
            "stage_duration_seconds",
            "Time spent per request stage",
            stage_seconds.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "End-to-end request time",
            request_seconds.clone(),
        );
        registry.register(
            "failures",
            "Internal failures that refused a request (fail closed), by component",
            failures.clone(),
        );
        registry.register(
            "streams_active",
            "Streaming responses in flight",
            streams_active.clone(),
        );
        registry.register(
            "policy_reloads",
            "Policy reloads by outcome",
            policy_reloads.clone(),
        );
        let export = ExportMetrics::default();
        registry.register(
            "export_delivered_records",
            "Audit records a SIEM sink accepted",
            export.delivered.clone(),
        );
        registry.register(
            "export_failures",
            "Failed SIEM delivery attempts (each is retried with backoff)",
            export.failures.clone(),
        );
        registry.register(
            "export_backlog_records",
            "Audit records not yet delivered to a SIEM sink (the spool is the audit log)",
            export.backlog.clone(),
        );
        registry.register(
            "export_backlog_alert",
            "1 while a sink's backlog is at or above its alert_backlog",
            export.alert.clone(),
        );
        registry.register(
            "export_cursor",
            "Sequence number of the last audit record a sink delivered",
            export.cursor.clone(),
        );
        registry.register(
            "export_skipped_records",
            "Audit records a sink did not deliver: overflow past max_backlog, or unrenderable",
            export.skipped.clone(),
        );
        let stages = TimedStage::ALL
            .iter()
            .map(|stage| {
                stage_seconds
                    .get_or_create(&Stage {
                        stage: stage.as_str(),
                    })
                    .clone()
            })
            .collect();
        Metrics {
            stages,
            registry,
            requests,
            decisions,
            findings,
            stage_seconds,
            request_seconds,
            failures,
            streams_active,
            policy_reloads,
            approvals,
            export,
        }
    }

    pub fn observe_stage(&self, stage: TimedStage, d: Duration) {
        if let Some(h) = self.stages.get(stage as usize) {
            h.observe(d.as_secs_f64());
        }
    }

    pub fn fail(&self, component: &'static str) {
        self.failures.get_or_create(&Component { component }).inc();
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
            out.push_str("# metrics encoding failed\n");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_stage_observes_its_own_histogram() {
        for (i, s) in TimedStage::ALL.iter().enumerate() {
            assert_eq!(*s as usize, i, "{s:?} is out of place in ALL");
        }
        let m = Metrics::new();
        m.observe_stage(TimedStage::Record, Duration::from_micros(3));
        let text = m.encode();
        let line = text
            .lines()
            .find(|l| l.starts_with("ztai_stage_duration_seconds_count{stage=\"record\"}"))
            .unwrap_or_default();
        assert!(line.ends_with(" 1"), "{text}");
        let other = text
            .lines()
            .find(|l| l.starts_with("ztai_stage_duration_seconds_count{stage=\"limit\"}"))
            .unwrap_or_default();
        assert!(other.ends_with(" 0"), "{text}");
    }
}
