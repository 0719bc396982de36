//! MCP tool pins under `/api/v1/mcp/tools`: every tool the gateway has seen, its pinned and
//! current definitions, and why a blocked one is blocked; approving a definition (after a
//! poisoning finding, a rug pull, or in `tool_approval = "admin"` mode) and blocking a tool.
//!
//! An approval names the digest the administrator reviewed, and is refused if the server has
//! offered another definition since: what is approved is exactly what was read. Administrative
//! (`admin` on `Api::"mcp_tools"`), recorded like every admin call.

use super::{Caller, blocking, governed};
use crate::error::GatewayError;
use crate::state::Gateway;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use ztai_store::McpToolRow;

fn view(r: &McpToolRow) -> Value {
    json!({
        "server": r.server,
        "tool": r.tool,
        "status": r.status.as_str(),
        "pinned_digest": r.pinned_digest,
        "seen_digest": r.seen_digest,
        "definition": serde_json::from_str::<Value>(&r.definition_json).unwrap_or(Value::Null),
        "findings": r.findings,
        "reason": r.reason,
        "first_seen": r.first_seen,
        "updated_at": r.updated_at,
        "approved_by": r.approved_by,
        "approved_at": r.approved_at,
    })
}

#[derive(Debug, Deserialize)]
pub(super) struct ListQuery {
    server: Option<String>,
}

pub(super) async fn list(
    State(gw): State<Arc<Gateway>>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> Response {
    let g = gw.clone();
    governed(
        &gw,
        &caller,
        "mcp_tools",
        "admin::list_mcp_tools",
        |_| async move {
            let rows = blocking(&g, move |gw| {
                gw.store
                    .list_mcp_tools(q.server.as_deref())
                    .map_err(GatewayError::store)
            })
            .await?;
            Ok((
                StatusCode::OK,
                json!({"tools": rows.iter().map(view).collect::<Vec<_>>()}),
            ))
        },
    )
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApproveBody {
    /// The `seen_digest` the administrator reviewed.
    digest: String,
}

pub(super) async fn approve(
    State(gw): State<Arc<Gateway>>,
    caller: Caller,
    Path((server, tool)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    let g = gw.clone();
    governed(&gw, &caller, "mcp_tools", "admin::approve_mcp_tool", |actor| async move {
        let req: ApproveBody = serde_json::from_slice(&body).map_err(|e| {
            GatewayError::Unprocessable(format!(
                "expected {{\"digest\": \"<the seen_digest you reviewed>\"}}: {e}"
            ))
        })?;
        let by = format!("{}:{}", actor.kind, actor.id);
        let (s, t) = (server.clone(), tool.clone());
        let (approved, row) = blocking(&g, move |gw| {
            let store = gw.store.as_ref();
            let ok = store
                .approve_mcp_tool(&s, &t, &req.digest, &by, crate::clock::unix_now_i64())
                .map_err(GatewayError::store)?;
            Ok((ok, store.mcp_tool(&s, &t).map_err(GatewayError::store)?))
        })
        .await?;
        match (approved, row) {
            (true, Some(row)) => Ok((StatusCode::OK, view(&row))),
            (false, Some(row)) => Err(GatewayError::Conflict(format!(
                "tool `{tool}` of `{server}` now has definition {}, not the one you approved; review it again",
                row.seen_digest
            ))),
            _ => Err(GatewayError::NotFound(format!(
                "the gateway has not seen a tool `{tool}` on MCP server `{server}`"
            ))),
        }
    })
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BlockBody {
    reason: String,
}

pub(super) async fn block(
    State(gw): State<Arc<Gateway>>,
    caller: Caller,
    Path((server, tool)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    let g = gw.clone();
    governed(
        &gw,
        &caller,
        "mcp_tools",
        "admin::block_mcp_tool",
        |actor| async move {
            let req: BlockBody = serde_json::from_slice(&body).map_err(|e| {
                GatewayError::Unprocessable(format!("expected {{\"reason\": \"…\"}}: {e}"))
            })?;
            let reason = format!(
                "blocked by {}:{}: {}",
                actor.kind,
                actor.id,
                crate::approvals::one_line(&req.reason)
            );
            let (s, t) = (server.clone(), tool.clone());
            let done = blocking(&g, move |gw| {
                gw.store
                    .block_mcp_tool(&s, &t, &reason, crate::clock::unix_now_i64())
                    .map_err(GatewayError::store)
            })
            .await?;
            if !done {
                return Err(GatewayError::NotFound(format!(
                    "the gateway has not seen a tool `{tool}` on MCP server `{server}`"
                )));
            }
            Ok((
                StatusCode::OK,
                json!({"server": server, "tool": tool, "status": "blocked"}),
            ))
        },
    )
    .await
}
