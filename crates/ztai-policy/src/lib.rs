//! The policy decision point: Cedar policies, validated against the ZTAI schema, default deny.
//!
//! `PolicyEngine` is immutable once built: a reload builds a new engine and the caller swaps it in
//! atomically, so a request always sees one whole policy set. Allowing yields a `Permit`, a type only
//! this crate can construct, which forwarding code takes as proof that authorisation ran.

mod batch;
mod cache;
mod context;
mod engine;
mod slice;
mod testing;

pub use batch::{BatchDecider, ResourceFacts};
pub use context::{
    ArgumentsError, MAX_ARGUMENT_BYTES, MAX_ARGUMENT_DEPTH, MAX_ARGUMENT_LEAVES, RequestContext,
    flatten_arguments,
};
pub use engine::{
    Explanation, PolicyEngine, PolicyExplanation, PolicyOutcome, PolicySource, SCHEMA_TEXT,
};
pub use slice::ScopeMismatch;
pub use testing::{
    ContextSpec, PolicyQuestion, PolicyTestCase, PolicyTestFile, PolicyTestResult, QuestionError,
    run_tests,
};

use ztai_core::PolicyDecision;

/// Proof that the decision point allowed a request. Only `PolicyEngine::authorize` builds one.
#[derive(Debug, Clone)]
pub struct Permit {
    decision: PolicyDecision,
}

impl Permit {
    pub fn decision(&self) -> &PolicyDecision {
        &self.decision
    }

    /// Folds another permit for the same request into this one (both must be carried out).
    fn absorb(&mut self, other: Permit) {
        let d = &mut self.decision;
        for p in other.decision.policies {
            if !d.policies.contains(&p) {
                d.policies.push(p);
            }
        }
        for r in other.decision.reasons {
            if !d.reasons.contains(&r) {
                d.reasons.push(r);
            }
        }
        for o in other.decision.obligations {
            if !d.obligations.contains(&o) {
                d.obligations.push(o);
            }
        }
        d.errors.extend(other.decision.errors);
    }
}

/// The answer to one authorisation question.
#[derive(Debug, Clone)]
pub enum Verdict {
    Permit(Permit),
    Deny(PolicyDecision),
}

impl Verdict {
    pub fn decision(&self) -> &PolicyDecision {
        match self {
            Verdict::Permit(p) => &p.decision,
            Verdict::Deny(d) => d,
        }
    }
}

/// Why a policy set could not be loaded or a question could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read policy file `{file}`: {message}")]
    Io { file: String, message: String },
    #[error("{file}:{line}:{column}: syntax error: {message}")]
    Parse {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{file}:{line}:{column}: policy `{policy}` does not match the schema: {message}")]
    Validation {
        file: String,
        line: usize,
        column: usize,
        policy: String,
        message: String,
    },
    #[error(
        "policy id `{id}` is used twice (in `{first}` and `{second}`); give each policy a unique @id"
    )]
    DuplicateId {
        id: String,
        first: String,
        second: String,
    },
    #[error(
        "no policies found in `{0}`: add at least one `.cedar` file (with none, everything is denied)"
    )]
    Empty(String),
    #[error("the built-in schema is invalid: {0}")]
    Schema(String),
    #[error("cannot build the authorisation request: {0}")]
    Request(String),
}
