//! The lifecycle of a registered model version, as a state machine with no I/O.
//!
//! ```text
//! registered ──verify──▶ verified ──approve──▶ approved ──deploy──▶ deployed
//!      │                    ▲   │                  ▲  │                 │
//!      │                    │   │                  └──┼──superseded─────┘
//!      └──quarantine──▶ quarantined ◀──quarantine─────┴──────────────────┘
//!   any state ──revoke──▶ revoked        any state ──retire──▶ retired
//! ```
//!
//! Only `deployed` versions take traffic; the gateway falls back to the most recently deployed
//! version that is still `approved` when the deployed one leaves. A quarantined version comes back
//! only through `verify` again (new evidence), never straight to approved; `revoked` and `retired`
//! are final. Keeping the rules here means the store, the admin API and the CLI cannot disagree on
//! what a legal move is.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelState {
    Registered,
    Verified,
    Approved,
    Deployed,
    Quarantined,
    Revoked,
    Retired,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transition {
    /// Signature verified and every file scanned clean.
    Verify,
    /// A human approved the verified version for its uses.
    Approve,
    /// Routed: the gateway sends the model's traffic to this version.
    Deploy,
    /// Another version was deployed; this one stays approved (and is the fallback).
    Supersede,
    /// Taken out of routing at once, pending investigation.
    Quarantine,
    /// Its signature (or signer) is no longer trusted. Final.
    Revoke,
    /// No longer used. Final.
    Retire,
}

impl ModelState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Registered => "registered",
            Self::Verified => "verified",
            Self::Approved => "approved",
            Self::Deployed => "deployed",
            Self::Quarantined => "quarantined",
            Self::Revoked => "revoked",
            Self::Retired => "retired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "registered" => Self::Registered,
            "verified" => Self::Verified,
            "approved" => Self::Approved,
            "deployed" => Self::Deployed,
            "quarantined" => Self::Quarantined,
            "revoked" => Self::Revoked,
            "retired" => Self::Retired,
            _ => return None,
        })
    }

    /// Whether the version may take traffic.
    pub fn routable(self) -> bool {
        self == Self::Deployed
    }

    /// The state `transition` leads to from here, or why it cannot happen.
    pub fn apply(self, transition: Transition) -> Result<ModelState, IllegalTransition> {
        use ModelState::*;
        use Transition::*;
        let next = match (self, transition) {
            (Registered | Quarantined, Verify) => Verified,
            (Verified, Approve) => Approved,
            (Approved, Deploy) => Deployed,
            (Deployed, Supersede) => Approved,
            (Registered | Verified | Approved | Deployed, Quarantine) => Quarantined,
            (Revoked | Retired, _) => {
                return Err(IllegalTransition {
                    from: self,
                    transition,
                });
            }
            (_, Revoke) => Revoked,
            (_, Retire) => Retired,
            _ => {
                return Err(IllegalTransition {
                    from: self,
                    transition,
                });
            }
        };
        Ok(next)
    }
}

impl fmt::Display for ModelState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Transition {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Verify => "verify",
            Self::Approve => "approve",
            Self::Deploy => "deploy",
            Self::Supersede => "supersede",
            Self::Quarantine => "quarantine",
            Self::Revoke => "revoke",
            Self::Retire => "retire",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "verify" => Self::Verify,
            "approve" => Self::Approve,
            "deploy" => Self::Deploy,
            "supersede" => Self::Supersede,
            "quarantine" => Self::Quarantine,
            "revoke" => Self::Revoke,
            "retire" => Self::Retire,
            _ => return None,
        })
    }

    /// What must hold before the move, in words for an error message.
    fn requires(self) -> &'static str {
        match self {
            Self::Verify => "a registered or quarantined version",
            Self::Approve => "a verified version (verify its signature and scan first)",
            Self::Deploy => "an approved version",
            Self::Supersede => "a deployed version",
            Self::Quarantine => "a version that is not already quarantined, revoked or retired",
            Self::Revoke | Self::Retire => "a version that is not revoked or retired",
        }
    }
}

/// A move the lifecycle does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cannot {} a {} model version: that needs {}", .transition.as_str(), .from.as_str(), .transition.requires())]
pub struct IllegalTransition {
    pub from: ModelState,
    pub transition: Transition,
}

#[cfg(test)]
mod tests {
    use super::ModelState::*;
    use super::Transition::*;
    use super::*;

    #[test]
    fn the_happy_path_reaches_deployed_only_in_order() {
        let deployed = Registered
            .apply(Verify)
            .and_then(|s| s.apply(Approve))
            .and_then(|s| s.apply(Deploy));
        assert_eq!(deployed, Ok(Deployed));
        assert!(Registered.apply(Approve).is_err());
        assert!(Registered.apply(Deploy).is_err());
        assert!(Verified.apply(Deploy).is_err());
        assert_eq!(Deployed.apply(Supersede), Ok(Approved));
        assert!(Deployed.routable() && !Approved.routable() && !Quarantined.routable());
    }

    #[test]
    fn quarantine_returns_only_through_verification_and_final_states_stay_final() {
        for s in [Registered, Verified, Approved, Deployed] {
            assert_eq!(s.apply(Quarantine), Ok(Quarantined));
        }
        assert!(Quarantined.apply(Approve).is_err());
        assert!(Quarantined.apply(Deploy).is_err());
        assert_eq!(Quarantined.apply(Verify), Ok(Verified));
        for s in [Revoked, Retired] {
            for t in [
                Verify, Approve, Deploy, Supersede, Quarantine, Revoke, Retire,
            ] {
                assert!(s.apply(t).is_err(), "{s} {t:?}");
            }
        }
        assert_eq!(Deployed.apply(Revoke), Ok(Revoked));
        assert_eq!(Quarantined.apply(Retire), Ok(Retired));
        let e = Verified
            .apply(Deploy)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert_eq!(
            e,
            "cannot deploy a verified model version: that needs an approved version"
        );
    }

    #[test]
    fn names_round_trip() {
        for s in [
            Registered,
            Verified,
            Approved,
            Deployed,
            Quarantined,
            Revoked,
            Retired,
        ] {
            assert_eq!(ModelState::parse(s.as_str()), Some(s));
        }
        for t in [
            Verify, Approve, Deploy, Supersede, Quarantine, Revoke, Retire,
        ] {
            assert_eq!(Transition::parse(t.as_str()), Some(t));
        }
    }
}
