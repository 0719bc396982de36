//! The statement an approval decision signs.
//!
//! A decision on a held request is signed twice over the same text: first by the approver's own
//! key (on the approver's machine, by `ztai approvals approve|deny`), then countersigned by the
//! gateway when it records it. Both sides must build byte-for-byte the same statement, so it is
//! defined once, here, with no I/O. It is line-based, one fact per line; free text is reduced to
//! one line so it cannot forge another.

/// Where a held request stands, as stored. A pending request past its deadline counts as
/// expired before the sweep writes it so (see the gateway's `TicketState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApprovalStatus {
    Pending,
    Approved,
    Denied,
    Expired,
}

impl ApprovalStatus {
    /// The stored and displayed form.
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalStatus::Pending => "pending",
            ApprovalStatus::Approved => "approved",
            ApprovalStatus::Denied => "denied",
            ApprovalStatus::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => ApprovalStatus::Pending,
            "approved" => ApprovalStatus::Approved,
            "denied" => ApprovalStatus::Denied,
            "expired" => ApprovalStatus::Expired,
            _ => return None,
        })
    }

    /// The status a decision writes.
    pub fn decided(approved: bool) -> Self {
        if approved {
            ApprovalStatus::Approved
        } else {
            ApprovalStatus::Denied
        }
    }
}

impl std::fmt::Display for ApprovalStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// At most this many characters of free text (a reason, an id) go into a statement.
pub const MAX_LINE_CHARS: usize = 500;

/// Everything a decision on an approval ticket asserts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecisionStatement<'a> {
    /// The ticket (`apr_…`).
    pub approval_id: &'a str,
    pub approved: bool,
    /// `kind:id` of whoever decided.
    pub approver: &'a str,
    /// `kind:id` of whoever made the held request.
    pub requester: &'a str,
    /// The resource the held request acts on (`model:…`, `tool:…`).
    pub resource: &'a str,
    /// The digest that binds the ticket to exactly one request.
    pub request_digest: &'a str,
    /// When the approver decided, Unix seconds.
    pub decided_at: i64,
    pub reason: &'a str,
}

impl DecisionStatement<'_> {
    /// The text both signatures cover.
    pub fn text(&self) -> String {
        format!(
            "ztai-approval-decision/v1\napproval {}\ndecision {}\napprover {}\nrequester {}\nresource {}\nrequest {}\ndecided_at {}\nreason {}\n",
            one_line(self.approval_id),
            ApprovalStatus::decided(self.approved).as_str(),
            one_line(self.approver),
            one_line(self.requester),
            one_line(self.resource),
            one_line(self.request_digest),
            self.decided_at,
            one_line(self.reason)
        )
    }
}

/// `s` with control characters (line breaks among them) turned into spaces, cut to
/// `MAX_LINE_CHARS` characters.
pub fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_LINE_CHARS)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_reads_back_as_itself_and_nothing_else_parses() {
        use ApprovalStatus::*;
        for s in [Pending, Approved, Denied, Expired] {
            assert_eq!(ApprovalStatus::parse(s.as_str()), Some(s));
        }
        for bad in ["", "Pending", "used", "approved ", "deny"] {
            assert_eq!(ApprovalStatus::parse(bad), None, "{bad:?}");
        }
    }

    fn statement(reason: &str) -> String {
        DecisionStatement {
            approval_id: "apr_01",
            approved: false,
            approver: "user:carol",
            requester: "user:demo",
            resource: "model:echo-sensitive",
            request_digest: "ab12",
            decided_at: 5,
            reason,
        }
        .text()
    }

    #[test]
    fn a_reason_cannot_forge_a_line() {
        let text = statement("no\ndecision approved\r\n");
        assert_eq!(text.lines().count(), 9, "{text}");
        assert!(text.contains("\ndecision denied\n"));
        assert!(!text.contains("\ndecision approved"));
        assert!(text.ends_with("reason no decision approved  \n"), "{text}");
    }

    #[test]
    fn every_fact_is_covered() {
        let base = DecisionStatement {
            approval_id: "apr_01",
            approved: true,
            approver: "user:carol",
            requester: "user:demo",
            resource: "model:m",
            request_digest: "ab12",
            decided_at: 5,
            reason: "ok",
        };
        let variants = [
            DecisionStatement {
                approval_id: "apr_02",
                ..base
            },
            DecisionStatement {
                approved: false,
                ..base
            },
            DecisionStatement {
                approver: "user:dave",
                ..base
            },
            DecisionStatement {
                requester: "user:eve",
                ..base
            },
            DecisionStatement {
                resource: "model:n",
                ..base
            },
            DecisionStatement {
                request_digest: "cd34",
                ..base
            },
            DecisionStatement {
                decided_at: 6,
                ..base
            },
            DecisionStatement {
                reason: "ok!",
                ..base
            },
        ];
        for v in variants {
            assert_ne!(v.text(), base.text(), "{v:?}");
        }
    }

    #[test]
    fn long_text_is_cut() {
        let text = statement(&"x".repeat(10_000));
        let reason = text.lines().last().unwrap_or_default();
        assert_eq!(reason.chars().count(), "reason ".len() + MAX_LINE_CHARS);
    }
}
