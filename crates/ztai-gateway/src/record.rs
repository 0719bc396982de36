//! What one request gathers on its way through the stages, turned into an `AuditRecord` at the end.

use std::time::{Instant, SystemTime};
use ztai_core::{
    AuditRecord, Decision, Finding, FindingSummary, PolicyDecision, Principal, StageTimings,
};

#[derive(Debug, Clone)]
pub(crate) struct Trace {
    pub request_id: String,
    pub started: Instant,
    pub time: SystemTime,
    pub principal: Option<Principal>,
    pub action: &'static str,
    pub resource: String,
    pub findings: Vec<Finding>,
    pub decision: Option<PolicyDecision>,
    pub obligations_done: Vec<String>,
    pub timings: StageTimings,
    pub request_digest: String,
    pub response_digest: String,
    pub status: u16,
    pub reason: String,
    pub content: Option<serde_json::Value>,
    pub client: String,
    pub credential: Option<ztai_core::CredentialEvent>,
}

pub(crate) fn micros(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX)
}

pub(crate) fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_micros(t).to_string()
}

impl Trace {
    pub fn new(request_id: String, action: &'static str) -> Self {
        Trace {
            request_id,
            started: Instant::now(),
            time: SystemTime::now(),
            principal: None,
            action,
            resource: String::new(),
            findings: Vec::new(),
            decision: None,
            obligations_done: Vec::new(),
            timings: StageTimings::default(),
            request_digest: String::new(),
            response_digest: String::new(),
            status: 0,
            reason: String::new(),
            content: None,
            client: String::new(),
            credential: None,
        }
    }

    pub fn into_record(mut self, instance: &str) -> AuditRecord {
        self.timings.total_us = micros(self.started);
        let (principal, chain) = match &self.principal {
            Some(p) => (format!("{}:{}", p.kind, p.id), p.chain()),
            None => ("anonymous".to_string(), vec![]),
        };
        let (decision, policies) = match &self.decision {
            Some(d) => (d.decision, d.policies.clone()),
            None => (Decision::Deny, vec![]),
        };
        // A request that never reached a decision but got an answer is impossible by
        // construction; a success status without a permit is recorded as the denial it is.
        let decision = if self.status >= 400 {
            Decision::Deny
        } else {
            decision
        };
        AuditRecord {
            id: self.request_id,
            time: rfc3339(self.time),
            instance: instance.to_string(),
            principal,
            chain,
            action: self.action.to_string(),
            resource: self.resource,
            decision,
            policies,
            reason: self.reason,
            obligations: self.obligations_done,
            findings: self.findings.iter().map(FindingSummary::from).collect(),
            status: self.status,
            request_digest: self.request_digest,
            response_digest: self.response_digest,
            timings: self.timings,
            content: self.content,
            client: self.client,
            credential: self.credential,
        }
    }
}

/// A record of something the gateway itself did (a policy reload, an export overflow): the
/// principal is the gateway's own service identity.
pub(crate) fn system_record(
    instance: &str,
    action: &str,
    resource: &str,
    decision: Decision,
    reason: String,
) -> AuditRecord {
    AuditRecord {
        id: crate::ids::new_request_id(),
        time: rfc3339(SystemTime::now()),
        instance: instance.to_string(),
        principal: "service:ztai".into(),
        chain: vec!["service:ztai".into()],
        action: action.into(),
        resource: resource.into(),
        decision,
        policies: vec![],
        reason,
        obligations: vec![],
        findings: vec![],
        status: 0,
        request_digest: String::new(),
        response_digest: String::new(),
        timings: StageTimings::default(),
        content: None,
        client: String::new(),
        credential: None,
    }
}
