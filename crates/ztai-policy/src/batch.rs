//! Deciding many resources of one question at once (retrieval over search results).
//!
//! Policy cannot tell two resources of one type apart except by the facts in the question —
//! parents, the catalogue facts in the context, findings — or by naming one of them literally
//! (`PolicyEngine::names`). So a batch decides each distinct set of facts once and reuses the
//! answer, and decides named resources one by one. Everything else about the question (the
//! principal, its chain, the request's address and clock) must be the same for the whole batch,
//! which is why one `BatchDecider` serves one caller's one batch and is then dropped.

use crate::{PolicyEngine, RequestContext, Verdict};
use std::collections::{BTreeSet, HashMap};
use ztai_core::{Finding, Resource};

/// What a catalogue says of one resource: its parents and the facts policy reads from the
/// context (`data_classification`, `resource_owner`, `resource_readers`, `resource_labels`).
#[derive(Debug, Clone, Copy)]
pub struct ResourceFacts<'a> {
    /// Sorted (the catalogue sorts them), so equal sets compare equal.
    pub parents: &'a [String],
    pub classification: &'a str,
    pub owner: &'a str,
    pub readers: &'a BTreeSet<String>,
    pub labels: &'a BTreeSet<String>,
}

impl ResourceFacts<'_> {
    /// Puts the facts into a request context.
    pub fn apply(&self, ctx: &mut RequestContext) {
        ctx.data_classification = self.classification.to_string();
        ctx.resource_owner = self.owner.to_string();
        ctx.resource_readers = self.readers.clone();
        ctx.resource_labels = self.labels.clone();
    }

    /// Everything about a candidate policy can see, as bytes: equal keys, equal decisions (for
    /// resources no policy names). Every part is length-prefixed.
    pub fn class_key(&self, findings: &[Finding]) -> Vec<u8> {
        fn push(k: &mut Vec<u8>, s: &str) {
            k.extend_from_slice(&(s.len() as u64).to_le_bytes());
            k.extend_from_slice(s.as_bytes());
        }
        fn push_all<'s>(k: &mut Vec<u8>, len: usize, items: impl Iterator<Item = &'s String>) {
            k.extend_from_slice(&(len as u64).to_le_bytes());
            for s in items {
                push(k, s);
            }
        }
        let mut k = Vec::with_capacity(96);
        push_all(&mut k, self.parents.len(), self.parents.iter());
        push_all(&mut k, self.readers.len(), self.readers.iter());
        push_all(&mut k, self.labels.len(), self.labels.iter());
        push(&mut k, self.classification);
        push(&mut k, self.owner);
        // What `with_findings` folds into the context (most candidates have none).
        if findings.is_empty() {
            k.extend_from_slice(&[0u8; 32]);
            return k;
        }
        k.push(1);
        let summary = RequestContext::default().with_findings(findings.iter());
        k.extend_from_slice(&summary.max_severity.to_le_bytes());
        for set in [
            &summary.finding_categories,
            &summary.finding_types,
            &summary.high_severity_categories,
        ] {
            push_all(&mut k, set.len(), set.iter());
        }
        k
    }
}

/// Remembers the answer for each class of facts within one batch.
#[derive(Debug)]
pub struct BatchDecider<'e> {
    engine: &'e PolicyEngine,
    classes: HashMap<Vec<u8>, Verdict>,
    evaluated: usize,
}

impl<'e> BatchDecider<'e> {
    pub fn new(engine: &'e PolicyEngine) -> Self {
        BatchDecider {
            engine,
            classes: HashMap::new(),
            evaluated: 0,
        }
    }

    /// The verdict for `resource`: the class's remembered answer, or `evaluate()`'s (which must
    /// ask `engine` this very question, with the facts and findings in its context).
    pub fn decide<E>(
        &mut self,
        resource: &Resource,
        facts: &ResourceFacts<'_>,
        findings: &[Finding],
        evaluate: impl FnOnce() -> Result<Verdict, E>,
    ) -> Result<Verdict, E> {
        if self.engine.names(resource) {
            self.evaluated += 1;
            return evaluate();
        }
        let key = facts.class_key(findings);
        if let Some(v) = self.classes.get(&key) {
            return Ok(v.clone());
        }
        self.evaluated += 1;
        let v = evaluate()?;
        self.classes.insert(key, v.clone());
        Ok(v)
    }

    /// How many questions were actually put to the engine.
    pub fn evaluated(&self) -> usize {
        self.evaluated
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PolicySource;
    use ztai_core::{Action, Channel, FindingCategory, Principal, PrincipalKind, Severity, Span};

    fn finding(kind: &str, severity: Severity) -> Finding {
        Finding {
            kind: kind.into(),
            category: FindingCategory::PromptInjection,
            severity,
            confidence: 1.0,
            detector: "test",
            span: Span::new(0, 1),
            channel: Channel::Untrusted,
        }
    }

    struct Owned {
        parents: Vec<String>,
        classification: String,
        owner: String,
        readers: BTreeSet<String>,
        labels: BTreeSet<String>,
    }

    impl Owned {
        fn new(parents: &[&str], classification: &str) -> Self {
            Owned {
                parents: parents.iter().map(|s| s.to_string()).collect(),
                classification: classification.into(),
                owner: String::new(),
                readers: BTreeSet::new(),
                labels: BTreeSet::new(),
            }
        }
        fn facts(&self) -> ResourceFacts<'_> {
            ResourceFacts {
                parents: &self.parents,
                classification: &self.classification,
                owner: &self.owner,
                readers: &self.readers,
                labels: &self.labels,
            }
        }
    }

    #[test]
    fn class_keys_differ_wherever_policy_could_see_a_difference() {
        let base = Owned::new(&["wiki"], "internal");
        let k = base.facts().class_key(&[]);
        assert_eq!(k, Owned::new(&["wiki"], "internal").facts().class_key(&[]));
        let mut owner = Owned::new(&["wiki"], "internal");
        owner.owner = "user:alice".into();
        let mut readers = Owned::new(&["wiki"], "internal");
        readers.readers.insert("staff".into());
        let mut labels = Owned::new(&["wiki"], "internal");
        labels.labels.insert("hr".into());
        let others = [
            Owned::new(&["hr", "wiki"], "internal")
                .facts()
                .class_key(&[]),
            Owned::new(&["wiki"], "public").facts().class_key(&[]),
            Owned::new(&[], "internal").facts().class_key(&[]),
            owner.facts().class_key(&[]),
            readers.facts().class_key(&[]),
            labels.facts().class_key(&[]),
            base.facts()
                .class_key(&[finding("override", Severity::High)]),
            base.facts()
                .class_key(&[finding("override", Severity::Low)]),
            base.facts()
                .class_key(&[finding("persona", Severity::High)]),
        ];
        for (i, o) in others.iter().enumerate() {
            assert_ne!(&k, o, "variant {i}");
        }
        // Moving a name between sets changes the key.
        let mut a = Owned::new(&["wiki"], "internal");
        a.readers.insert("x".into());
        let mut b = Owned::new(&["wiki"], "internal");
        b.labels.insert("x".into());
        assert_ne!(a.facts().class_key(&[]), b.facts().class_key(&[]));
    }

    #[test]
    fn a_batch_decides_each_class_once_and_named_documents_alone_with_the_same_answers() {
        let text = r#"
            permit (principal, action == Action::"read_document", resource)
              when { context.resource_readers.containsAny(context.principal_groups) };
            forbid (principal, action == Action::"read_document", resource == Document::"d7");
        "#;
        let engine = PolicyEngine::from_sources(vec![PolicySource {
            name: "d.cedar".into(),
            text: text.into(),
        }])
        .unwrap();
        let alice = Principal {
            kind: PrincipalKind::User,
            id: "alice".into(),
            groups: vec!["staff".into()],
            on_behalf_of: vec![],
            credential_id: "t".into(),
            device_posture: Vec::new(),
        };
        let base = RequestContext::new("retrieval").with_principal(&alice);
        let mut staff = Owned::new(&["wiki"], "internal");
        staff.readers.insert("staff".into());
        let mut hr = Owned::new(&["wiki"], "internal");
        hr.readers.insert("hr".into());
        let mut batch = BatchDecider::new(&engine);
        for i in 0..20 {
            let doc = if i % 2 == 0 { &staff } else { &hr };
            let resource = Resource::Document(format!("d{i}"));
            let alone = || {
                let mut ctx = base.clone();
                doc.facts().apply(&mut ctx);
                engine.evaluate(&alice, Action::ReadDocument, &resource, &doc.parents, &ctx)
            };
            let batched = batch.decide(&resource, &doc.facts(), &[], alone).unwrap();
            let fresh = alone().unwrap();
            assert_eq!(
                batched.decision().decision,
                fresh.decision().decision,
                "d{i}"
            );
        }
        // Two classes, plus d7 on its own because a policy names it.
        assert_eq!(batch.evaluated(), 3);
        // Named, d7 does not take its class's permit even with a permitted class's facts.
        let d7 = Resource::Document("d7".into());
        let v = batch
            .decide(&d7, &staff.facts(), &[], || {
                let mut ctx = base.clone();
                staff.facts().apply(&mut ctx);
                engine.evaluate(&alice, Action::ReadDocument, &d7, &staff.parents, &ctx)
            })
            .unwrap();
        assert!(!v.decision().is_allow());
    }
}
