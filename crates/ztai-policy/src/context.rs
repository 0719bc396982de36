//! The request context policy sees, built from inspection findings and request facts.

use std::collections::BTreeSet;
use ztai_core::{Finding, Severity};

/// Facts about one request that policies may use. Field names match the schema's `RequestContext`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestContext {
    pub operation: String,
    pub stream: bool,
    pub max_severity: i64,
    pub finding_categories: BTreeSet<String>,
    pub finding_types: BTreeSet<String>,
    pub high_severity_categories: BTreeSet<String>,
    pub risk_score: i64,
    pub estimated_tokens: i64,
    pub on_behalf_of: String,
    pub delegation_chain: BTreeSet<String>,
    pub delegation_depth: i64,
}

impl RequestContext {
    pub fn new(operation: &str) -> Self {
        RequestContext {
            operation: operation.to_string(),
            ..Default::default()
        }
    }

    /// Sets the delegation fields from the principal's chain.
    pub fn with_delegation(mut self, principal: &ztai_core::Principal) -> Self {
        self.on_behalf_of = principal
            .on_behalf_of
            .first()
            .map(|p| p.id.clone())
            .unwrap_or_default();
        self.delegation_chain = principal.chain().into_iter().collect();
        self.delegation_depth = principal.on_behalf_of.len() as i64;
        self
    }

    /// Folds findings into the context.
    pub fn with_findings<'a>(mut self, findings: impl IntoIterator<Item = &'a Finding>) -> Self {
        for f in findings {
            self.max_severity = self.max_severity.max(f.severity.rank());
            self.finding_categories
                .insert(f.category.as_str().to_string());
            self.finding_types.insert(f.kind.clone());
            if f.severity >= Severity::High {
                self.high_severity_categories
                    .insert(f.category.as_str().to_string());
            }
        }
        self
    }
}
