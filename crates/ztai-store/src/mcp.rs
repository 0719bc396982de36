//! What the MCP proxy keeps: the tool definitions it has seen and pinned (so a server that
//! changes a tool after approval — a rug pull — is caught), and its sessions with the taint
//! labels they have gathered (so any replica sharing the store applies the same data-flow rules).

use crate::{Store, StoreError};
use rusqlite::{OptionalExtension, params};
use std::collections::BTreeSet;

/// Whether a tool may be called: `Approved` when its current definition is the pinned one,
/// `Blocked` when it is new with findings, changed since it was pinned, or waiting for an
/// administrator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ToolStatus {
    Approved,
    Blocked,
}

impl ToolStatus {
    /// The stored and displayed form.
    pub fn as_str(self) -> &'static str {
        match self {
            ToolStatus::Approved => "approved",
            ToolStatus::Blocked => "blocked",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "approved" => Some(ToolStatus::Approved),
            "blocked" => Some(ToolStatus::Blocked),
            _ => None,
        }
    }
}

/// One tool of one MCP server as the gateway last saw it; `pinned_digest` is the approved
/// definition's digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpToolRow {
    pub server: String,
    pub tool: String,
    pub status: ToolStatus,
    pub pinned_digest: Option<String>,
    pub seen_digest: String,
    pub definition_json: String,
    /// Finding types the definition's scan found.
    pub findings: Vec<String>,
    pub reason: String,
    pub first_seen: i64,
    pub updated_at: i64,
    pub approved_by: Option<String>,
    pub approved_at: Option<i64>,
}

/// One MCP session: who opened it on which server, until when, and what it has read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpSessionRow {
    /// SHA-256 of the session id, hex (the id itself is a bearer secret and is never stored).
    pub session_hash: String,
    pub server: String,
    pub principal: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub ended_at: Option<i64>,
    pub taint: BTreeSet<String>,
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

fn tool_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(McpToolRow, String)> {
    let status: String = r.get(2)?;
    let status = ToolStatus::parse(&status).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            2,
            rusqlite::types::Type::Text,
            format!("unknown tool status `{status}`").into(),
        )
    })?;
    Ok((
        McpToolRow {
            server: r.get(0)?,
            tool: r.get(1)?,
            status,
            pinned_digest: r.get(3)?,
            seen_digest: r.get(4)?,
            definition_json: r.get(5)?,
            findings: Vec::new(),
            reason: r.get(7)?,
            first_seen: r.get(8)?,
            updated_at: r.get(9)?,
            approved_by: r.get(10)?,
            approved_at: r.get(11)?,
        },
        r.get(6)?,
    ))
}

fn with_findings((mut row, json): (McpToolRow, String)) -> Result<McpToolRow, StoreError> {
    row.findings = serde_json::from_str(&json)
        .map_err(|e| corrupt(&format!("tool `{}` of `{}`", row.tool, row.server), e))?;
    Ok(row)
}

const TOOL_COLUMNS: &str = "server, tool, status, pinned_digest, seen_digest, definition_json, findings_json, reason, first_seen, updated_at, approved_by, approved_at";

impl Store {
    /// The tool's row, if the gateway has seen it.
    pub fn mcp_tool(&self, server: &str, tool: &str) -> Result<Option<McpToolRow>, StoreError> {
        let row = self
            .conn
            .prepare_cached(&format!(
                "SELECT {TOOL_COLUMNS} FROM mcp_tools WHERE server = ?1 AND tool = ?2"
            ))?
            .query_row(params![server, tool], tool_row)
            .optional()?;
        row.map(with_findings).transpose()
    }

    /// Inserts or replaces a tool's row (the caller decided its status from what it saw).
    pub fn put_mcp_tool(&self, row: &McpToolRow) -> Result<(), StoreError> {
        let findings = serde_json::to_string(&row.findings).map_err(|e| corrupt("findings", e))?;
        self.conn
            .prepare_cached(&format!(
                "INSERT INTO mcp_tools({TOOL_COLUMNS}) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
                 ON CONFLICT(server, tool) DO UPDATE SET status = excluded.status,
                   pinned_digest = excluded.pinned_digest, seen_digest = excluded.seen_digest,
                   definition_json = excluded.definition_json, findings_json = excluded.findings_json,
                   reason = excluded.reason, updated_at = excluded.updated_at,
                   approved_by = excluded.approved_by, approved_at = excluded.approved_at"
            ))?
            .execute(params![
                row.server,
                row.tool,
                row.status.as_str(),
                row.pinned_digest,
                row.seen_digest,
                row.definition_json,
                findings,
                row.reason,
                row.first_seen,
                row.updated_at,
                row.approved_by,
                row.approved_at
            ])?;
        Ok(())
    }

    /// Approves the definition with `digest`, only if it is still the one last seen (so an
    /// administrator approves exactly what they reviewed). False when the tool is unknown or
    /// the server has offered another definition since.
    pub fn approve_mcp_tool(
        &self,
        server: &str,
        tool: &str,
        digest: &str,
        by: &str,
        at: i64,
    ) -> Result<bool, StoreError> {
        let changed = self.conn.execute(
            "UPDATE mcp_tools SET status = 'approved', pinned_digest = seen_digest, approved_by = ?4,
               approved_at = ?5, updated_at = ?5, reason = 'approved by ' || ?4
             WHERE server = ?1 AND tool = ?2 AND seen_digest = ?3",
            params![server, tool, digest, by, at],
        )?;
        Ok(changed == 1)
    }

    /// Blocks a tool until it is approved again.
    pub fn block_mcp_tool(
        &self,
        server: &str,
        tool: &str,
        reason: &str,
        at: i64,
    ) -> Result<bool, StoreError> {
        let changed = self.conn.execute(
            "UPDATE mcp_tools SET status = 'blocked', reason = ?3, updated_at = ?4
             WHERE server = ?1 AND tool = ?2",
            params![server, tool, reason, at],
        )?;
        Ok(changed == 1)
    }

    /// Every tool seen, by server and name; only `server`'s when given.
    pub fn list_mcp_tools(&self, server: Option<&str>) -> Result<Vec<McpToolRow>, StoreError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {TOOL_COLUMNS} FROM mcp_tools WHERE (?1 IS NULL OR server = ?1) ORDER BY server, tool"
        ))?;
        let rows = stmt
            .query_map(params![server], tool_row)?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter().map(with_findings).collect()
    }

    /// Records a new session.
    pub fn insert_mcp_session(&self, row: &McpSessionRow) -> Result<(), StoreError> {
        let taint = serde_json::to_string(&row.taint).map_err(|e| corrupt("taint", e))?;
        self.conn.execute(
            "INSERT INTO mcp_sessions(session_hash, server, principal, created_at, expires_at, ended_at, taint_json)
             VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                row.session_hash,
                row.server,
                row.principal,
                row.created_at,
                row.expires_at,
                row.ended_at,
                taint
            ],
        )?;
        Ok(())
    }

    /// A session by the hash of its id.
    pub fn mcp_session(&self, session_hash: &str) -> Result<Option<McpSessionRow>, StoreError> {
        let row = self
            .conn
            .prepare_cached(
                "SELECT session_hash, server, principal, created_at, expires_at, ended_at, taint_json
                 FROM mcp_sessions WHERE session_hash = ?1",
            )?
            .query_row(params![session_hash], |r| {
                Ok((
                    McpSessionRow {
                        session_hash: r.get(0)?,
                        server: r.get(1)?,
                        principal: r.get(2)?,
                        created_at: r.get(3)?,
                        expires_at: r.get(4)?,
                        ended_at: r.get(5)?,
                        taint: BTreeSet::new(),
                    },
                    r.get::<_, String>(6)?,
                ))
            })
            .optional()?;
        row.map(|(mut row, json)| {
            row.taint = serde_json::from_str(&json).map_err(|e| corrupt("session taint", e))?;
            Ok(row)
        })
        .transpose()
    }

    /// Adds taint labels to a session (labels are never removed) and returns the whole set.
    /// Read and write happen in one transaction, so two replicas adding at once lose nothing.
    pub fn add_mcp_taint(
        &mut self,
        session_hash: &str,
        labels: &BTreeSet<String>,
    ) -> Result<BTreeSet<String>, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let json: Option<String> = tx
            .query_row(
                "SELECT taint_json FROM mcp_sessions WHERE session_hash = ?1",
                params![session_hash],
                |r| r.get(0),
            )
            .optional()?;
        let json = json.ok_or_else(|| StoreError::NotFound("the MCP session".into()))?;
        let mut taint: BTreeSet<String> =
            serde_json::from_str(&json).map_err(|e| corrupt("session taint", e))?;
        let before = taint.len();
        taint.extend(labels.iter().cloned());
        if taint.len() != before {
            let json = serde_json::to_string(&taint).map_err(|e| corrupt("taint", e))?;
            tx.execute(
                "UPDATE mcp_sessions SET taint_json = ?2 WHERE session_hash = ?1",
                params![session_hash, json],
            )?;
        }
        tx.commit()?;
        Ok(taint)
    }

    /// Ends a session; false when it was unknown or already ended.
    pub fn end_mcp_session(&self, session_hash: &str, at: i64) -> Result<bool, StoreError> {
        let changed = self.conn.execute(
            "UPDATE mcp_sessions SET ended_at = ?2 WHERE session_hash = ?1 AND ended_at IS NULL",
            params![session_hash, at],
        )?;
        Ok(changed == 1)
    }

    /// Deletes sessions that expired before `before`; returns how many.
    pub fn prune_mcp_sessions(&self, before: i64) -> Result<usize, StoreError> {
        Ok(self.conn.execute(
            "DELETE FROM mcp_sessions WHERE expires_at < ?1",
            params![before],
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tool(digest: &str) -> McpToolRow {
        McpToolRow {
            server: "files".into(),
            tool: "read".into(),
            status: ToolStatus::Blocked,
            pinned_digest: None,
            seen_digest: digest.into(),
            definition_json: "{}".into(),
            findings: vec!["ignore_previous".into()],
            reason: "new".into(),
            first_seen: 1,
            updated_at: 1,
            approved_by: None,
            approved_at: None,
        }
    }

    #[test]
    fn a_tool_is_approved_only_at_the_digest_reviewed() {
        let s = Store::open_in_memory().unwrap();
        assert_eq!(s.mcp_tool("files", "read").unwrap(), None);
        s.put_mcp_tool(&tool("aa")).unwrap();
        assert_eq!(
            s.mcp_tool("files", "read").unwrap().unwrap().findings,
            vec!["ignore_previous"]
        );
        // The server offered another definition since the review: refused.
        assert!(
            !s.approve_mcp_tool("files", "read", "bb", "user:admin", 5)
                .unwrap()
        );
        assert!(
            s.approve_mcp_tool("files", "read", "aa", "user:admin", 5)
                .unwrap()
        );
        let row = s.mcp_tool("files", "read").unwrap().unwrap();
        assert_eq!(
            (row.status.as_str(), row.pinned_digest.as_deref()),
            ("approved", Some("aa"))
        );
        assert_eq!(row.approved_by.as_deref(), Some("user:admin"));
        assert!(s.block_mcp_tool("files", "read", "changed", 6).unwrap());
        assert_eq!(
            s.mcp_tool("files", "read").unwrap().unwrap().status,
            ToolStatus::Blocked
        );
        assert!(!s.block_mcp_tool("files", "nope", "changed", 6).unwrap());
        assert_eq!(s.list_mcp_tools(Some("files")).unwrap().len(), 1);
        assert!(s.list_mcp_tools(Some("other")).unwrap().is_empty());
    }

    #[test]
    fn taint_only_grows_and_sessions_end_once() {
        let mut s = Store::open_in_memory().unwrap();
        let row = McpSessionRow {
            session_hash: "h".into(),
            server: "files".into(),
            principal: "user:alice".into(),
            created_at: 1,
            expires_at: 100,
            ended_at: None,
            taint: BTreeSet::new(),
        };
        s.insert_mcp_session(&row).unwrap();
        let one: BTreeSet<String> = ["untrusted_content".to_string()].into();
        let two: BTreeSet<String> = ["confidential_data".to_string()].into();
        assert_eq!(s.add_mcp_taint("h", &one).unwrap(), one);
        let both = s.add_mcp_taint("h", &two).unwrap();
        assert_eq!(both.len(), 2);
        assert_eq!(s.mcp_session("h").unwrap().unwrap().taint, both);
        assert!(matches!(
            s.add_mcp_taint("missing", &one),
            Err(StoreError::NotFound(_))
        ));
        assert!(s.end_mcp_session("h", 5).unwrap());
        assert!(!s.end_mcp_session("h", 6).unwrap());
        assert_eq!(s.prune_mcp_sessions(101).unwrap(), 1);
        assert_eq!(s.mcp_session("h").unwrap(), None);
    }
}
