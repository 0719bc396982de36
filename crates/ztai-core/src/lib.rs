//! Domain types shared by every ZTAI crate: who asks (`Principal`), for what (`Action` on a
//! `Resource`), what inspection saw (`Finding`), what policy said (`PolicyDecision`) and what was
//! recorded (`AuditRecord`).
//!
//! This crate does no I/O and depends on nothing of ours, so detectors, the policy engine and the
//! identity layer can all speak the same language without knowing about each other or the gateway.

pub mod approval;
pub mod audit;
pub mod decision;
pub mod finding;
pub mod model_lifecycle;
pub mod principal;
pub mod resource;

pub use approval::{ApprovalStatus, DecisionStatement};
pub use audit::{AuditRecord, CredentialEvent, CredentialOperation, FindingSummary, StageTimings};
pub use decision::{Decision, Obligation, PolicyDecision};
pub use finding::{Channel, Finding, FindingCategory, Severity, Span};
pub use model_lifecycle::{IllegalTransition, ModelState, Transition};
pub use principal::{Principal, PrincipalKind, PrincipalRef};
pub use resource::{Action, Resource};
