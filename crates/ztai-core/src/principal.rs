//! Principals: the verified identity behind a request.
//!
//! A `Principal` is only ever produced by the identity layer after a credential checked out, so the
//! rest of the system can treat its fields as facts. The delegation chain names every identity the
//! request acts for (user → agent → sub-agent) so policy and audit see all of them, not just the
//! last hop.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The four kinds of principal the architecture distinguishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrincipalKind {
    User,
    Agent,
    Service,
    Model,
}

impl PrincipalKind {
    /// The Cedar entity type that represents this kind.
    pub fn entity_type(self) -> &'static str {
        match self {
            PrincipalKind::User => "User",
            PrincipalKind::Agent => "Agent",
            PrincipalKind::Service => "Service",
            PrincipalKind::Model => "Model",
        }
    }

    /// Parses the lowercase name used in configuration and the store.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "user" => Some(PrincipalKind::User),
            "agent" => Some(PrincipalKind::Agent),
            "service" => Some(PrincipalKind::Service),
            "model" => Some(PrincipalKind::Model),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalKind::User => "user",
            PrincipalKind::Agent => "agent",
            PrincipalKind::Service => "service",
            PrincipalKind::Model => "model",
        }
    }
}

impl fmt::Display for PrincipalKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A verified identity, with the groups it belongs to and the chain it acts for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    pub kind: PrincipalKind,
    /// Stable identifier, unique within its kind (e.g. `alice`, `support-bot`).
    pub id: String,
    /// Group memberships; policy grants rights to groups.
    pub groups: Vec<String>,
    /// Identities this principal acts for, outermost first (the user an agent acts for, …).
    /// Empty for a principal acting on its own behalf.
    pub on_behalf_of: Vec<PrincipalRef>,
    /// The credential that authenticated the request (key id, token revocation id), never the secret.
    pub credential_id: String,
    /// Device posture attributes the credential asserts (e.g. `managed`, `disk_encrypted`, from
    /// a JWT claim); policy reads them as `context.device_posture`. Empty when unknown.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_posture: Vec<String>,
}

/// A reference to a principal in a delegation chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrincipalRef {
    pub kind: PrincipalKind,
    pub id: String,
}

impl Principal {
    /// The whole chain as `kind:id` strings, outermost first, ending with this principal.
    pub fn chain(&self) -> Vec<String> {
        self.on_behalf_of
            .iter()
            .map(|p| format!("{}:{}", p.kind, p.id))
            .chain(std::iter::once(format!("{}:{}", self.kind, self.id)))
            .collect()
    }

    /// Whether this principal is a member of `group`.
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_lists_delegators_before_the_actor() {
        let p = Principal {
            kind: PrincipalKind::Agent,
            id: "bot".into(),
            groups: vec![],
            on_behalf_of: vec![PrincipalRef {
                kind: PrincipalKind::User,
                id: "alice".into(),
            }],
            credential_id: "k1".into(),
            device_posture: Vec::new(),
        };
        assert_eq!(p.chain(), vec!["user:alice", "agent:bot"]);
    }

    #[test]
    fn kind_round_trips_through_its_name() {
        for k in [
            PrincipalKind::User,
            PrincipalKind::Agent,
            PrincipalKind::Service,
            PrincipalKind::Model,
        ] {
            assert_eq!(PrincipalKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(PrincipalKind::parse("root"), None);
    }
}
