//! The agent registry, task token issue and revocation under `/api/v1`.
//!
//! Each change is applied to the gateway's memory right after the store accepted it, so the next
//! request already sees it; other replicas follow the store (`identity.tokens.revocation_poll_ms`).

use super::{Caller, blocking, governed};
use crate::delegation::{AgentEntry, MintRequest};
use crate::error::GatewayError;
use crate::record::rfc3339;
use crate::state::Gateway;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::SystemTime;
use ztai_identity::task_token::{Ceiling, valid_name};
use ztai_store::AgentRow;

fn agent_json(e: &AgentEntry) -> Value {
    let r = &e.row;
    json!({"agent_id": r.agent_id, "owner": r.owner, "purpose": r.purpose, "groups": r.groups,
           "ceiling": r.ceiling, "created_at": r.created_at, "created_by": r.created_by,
           "revoked_at": r.revoked_at, "revoked_by": r.revoked_by})
}

fn unprocessable(m: impl Into<String>) -> GatewayError {
    GatewayError::Unprocessable(m.into())
}

pub(super) async fn list_agents(State(gw): State<Arc<Gateway>>, caller: Caller) -> Response {
    let g = gw.clone();
    governed(
        &gw,
        &caller,
        "agents",
        "admin::list_agents",
        |_| async move {
            let agents: Vec<Value> = g.delegation.agents().iter().map(agent_json).collect();
            Ok((StatusCode::OK, json!({"agents": agents})))
        },
    )
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterAgent {
    pub agent_id: String,
    pub owner: String,
    pub purpose: String,
    #[serde(default)]
    pub groups: Option<Vec<String>>,
    pub ceiling: Vec<String>,
}

pub(super) async fn register_agent(
    State(gw): State<Arc<Gateway>>,
    caller: Caller,
    body: axum::body::Bytes,
) -> Response {
    let g = gw.clone();
    governed(&gw, &caller, "agents", "admin::register_agent", |actor| async move {
        let req: RegisterAgent = serde_json::from_slice(&body).map_err(|e| {
            unprocessable(format!(
                "expected {{\"agent_id\", \"owner\", \"purpose\", \"ceiling\": [\"model:…\", \"tool:…\"], \"groups\"}}: {e}"
            ))
        })?;
        let groups = req.groups.unwrap_or_else(|| vec!["agents".to_string()]);
        if !valid_name(&req.agent_id) || !valid_name(&req.owner) || !groups.iter().all(|g| valid_name(g)) {
            return Err(unprocessable(
                "`agent_id`, `owner` and `groups` must be 1-128 characters of letters, digits, `-`, `_`, `.`, `@`, `:` or `/`",
            ));
        }
        if req.purpose.trim().is_empty() || req.purpose.len() > 512 || req.purpose.chars().any(char::is_control) {
            return Err(unprocessable(
                "`purpose` must say what the agent is for, in at most 512 characters without control characters",
            ));
        }
        if req.ceiling.is_empty() {
            return Err(unprocessable(
                "`ceiling` must list what the agent may ever use, e.g. [\"model:gpt-4o-mini\", \"tool:orders.lookup\"]",
            ));
        }
        let ceiling = Ceiling::parse(&req.ceiling).map_err(unprocessable)?;
        let row = AgentRow {
            agent_id: req.agent_id,
            owner: req.owner,
            purpose: req.purpose,
            groups,
            ceiling: ceiling.entries(),
            created_at: rfc3339(SystemTime::now()),
            created_by: format!("{}:{}", actor.kind, actor.id),
            revoked_at: None,
            revoked_by: None,
        };
        let r2 = row.clone();
        blocking(&g, move |gw| {
            gw.store.insert_agent(&r2)
                .map_err(|e| match e {
                    ztai_store::StoreError::Conflict(m) => GatewayError::Conflict(format!(
                        "{m}; agent ids are never reused, pick another"
                    )),
                    other => GatewayError::store(other),
                })?;
            gw.delegation.put_agent(AgentEntry { row: r2, ceiling });
            Ok(())
        })
        .await?;
        let entry = g
            .delegation
            .agent(&row.agent_id)
            .ok_or_else(|| GatewayError::store("the agent vanished after it was stored"))?;
        Ok((StatusCode::CREATED, agent_json(&entry)))
    })
    .await
}

pub(super) async fn revoke_agent(
    State(gw): State<Arc<Gateway>>,
    caller: Caller,
    Path(agent_id): Path<String>,
) -> Response {
    let g = gw.clone();
    governed(
        &gw,
        &caller,
        "agents",
        "admin::revoke_agent",
        |actor| async move {
            let id = agent_id.clone();
            let by = format!("{}:{}", actor.kind, actor.id);
            let entry = blocking(&g, move |gw| {
                let at = rfc3339(SystemTime::now());
                // Memory first: the agent's tokens stop working even if the store write fails.
                if let Some(mut e) = gw.delegation.agent(&id) {
                    e.row.revoked_at.get_or_insert(at.clone());
                    e.row.revoked_by.get_or_insert(by.clone());
                    gw.delegation.put_agent(e);
                }
                gw.store.revoke_agent(&id, &at, &by).map_err(|e| match e {
                    ztai_store::StoreError::NotFound(m) => GatewayError::NotFound(m),
                    other => GatewayError::store(other),
                })?;
                gw.delegation
                    .agent(&id)
                    .ok_or_else(|| GatewayError::store("the agent vanished after it was revoked"))
            })
            .await?;
            let mut body = agent_json(&entry);
            if let Some(map) = body.as_object_mut() {
                map.insert("credential_id".into(), json!(format!("agent:{agent_id}")));
                map.insert("principal".into(), json!(format!("agent:{agent_id}")));
            }
            Ok((StatusCode::OK, body))
        },
    )
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssueToken {
    pub agent: String,
    pub on_behalf_of: String,
    /// The user's groups; by default, those of the user's active API keys.
    #[serde(default)]
    pub user_groups: Option<Vec<String>>,
    #[serde(default)]
    pub models: Vec<String>,
    #[serde(default)]
    pub tools: Vec<String>,
    /// Further rights as `kind:name` (`document:handbook`, `destination:api.example.com`).
    #[serde(default)]
    pub resources: Vec<String>,
    #[serde(default)]
    pub ttl_secs: Option<u64>,
    #[serde(default)]
    pub task: Option<String>,
}

pub(super) async fn issue_token(
    State(gw): State<Arc<Gateway>>,
    caller: Caller,
    body: axum::body::Bytes,
) -> Response {
    let g = gw.clone();
    governed(&gw, &caller, "tokens", "admin::issue_token", |_| async move {
        let req: IssueToken = serde_json::from_slice(&body).map_err(|e| {
            unprocessable(format!(
                "expected {{\"agent\", \"on_behalf_of\", \"models\", \"tools\", \"resources\", \"ttl_secs\", \"task\"}}: {e}"
            ))
        })?;
        let user = req.on_behalf_of.clone();
        let user_groups = match req.user_groups {
            Some(groups) => groups,
            None => blocking(&g, move |gw| {
                let keys = gw.store.list_keys().map_err(GatewayError::store)?;
                let mut groups: Vec<String> = keys
                    .into_iter()
                    .filter(|k| k.principal_kind == "user" && k.principal_id == user && k.revoked_at.is_none())
                    .flat_map(|k| k.groups)
                    .collect();
                groups.sort();
                groups.dedup();
                if groups.is_empty() {
                    return Err(unprocessable(format!(
                        "user `{user}` has no active API key to take groups from; pass `user_groups`"
                    )));
                }
                Ok(groups)
            })
            .await?,
        };
        let minted = g.delegation.mint(
            MintRequest {
                agent: req.agent,
                user: req.on_behalf_of,
                user_groups,
                models: req.models,
                tools: req.tools,
                resources: req.resources,
                ttl_secs: req.ttl_secs,
                task: req.task,
            },
            g.config.tokens.max_ttl.as_secs(),
        )?;
        Ok((StatusCode::CREATED, minted.json))
    })
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revoke {
    /// `token` (a revocation id from `ztai token inspect`) or `user`.
    pub kind: String,
    pub subject: String,
    #[serde(default)]
    pub reason: String,
}

pub(super) async fn revoke(
    State(gw): State<Arc<Gateway>>,
    caller: Caller,
    body: axum::body::Bytes,
) -> Response {
    let g = gw.clone();
    governed(&gw, &caller, "revocations", "admin::revoke", |actor| async move {
        let req: Revoke = serde_json::from_slice(&body).map_err(|e| {
            unprocessable(format!("expected {{\"kind\": \"token\"|\"user\", \"subject\", \"reason\"}}: {e}"))
        })?;
        let subject = req.subject.trim().to_ascii_lowercase();
        match req.kind.as_str() {
            "token" if subject.len() == 128 && subject.bytes().all(|b| b.is_ascii_hexdigit()) => {}
            "token" => {
                return Err(unprocessable(
                    "a token is revoked by one of its revocation ids (128 hex characters, from `ztai token inspect`)",
                ));
            }
            "user" if valid_name(&req.subject) => {}
            "user" => return Err(unprocessable("`subject` must be a user id")),
            other => {
                return Err(unprocessable(format!(
                    "`kind` `{other}` must be `token` or `user` (revoke agents with DELETE /api/v1/agents/{{id}}, keys with DELETE /api/v1/keys/{{id}})"
                )));
            }
        }
        if req.reason.len() > 512 || req.reason.chars().any(char::is_control) {
            return Err(unprocessable("`reason` must be at most 512 characters without control characters"));
        }
        let subject = if req.kind == "user" { req.subject.clone() } else { subject };
        let kind = req.kind.clone();
        let by = format!("{}:{}", actor.kind, actor.id);
        let (k2, s2, reason) = (kind.clone(), subject.clone(), req.reason.clone());
        blocking(&g, move |gw| {
            gw.delegation.revoke(&k2, &s2);
            gw.store.insert_revocation(&k2, &s2, &rfc3339(SystemTime::now()), &by, &reason)
                .map_err(GatewayError::store)
        })
        .await?;
        let credential_id = match kind.as_str() {
            "token" => format!("task_token:{subject}"),
            _ => format!("user:{subject}"),
        };
        Ok((
            StatusCode::OK,
            json!({"kind": kind, "subject": subject, "revoked": true, "credential_id": credential_id,
                   "principal": if kind == "user" { format!("user:{subject}") } else { String::new() }}),
        ))
    })
    .await
}

pub(super) async fn list_revocations(State(gw): State<Arc<Gateway>>, caller: Caller) -> Response {
    let g = gw.clone();
    governed(
        &gw,
        &caller,
        "revocations",
        "admin::list_revocations",
        |_| async move {
            let rows = blocking(&g, |gw| {
                gw.store.revocations_after(0).map_err(GatewayError::store)
            })
            .await?;
            let list: Vec<Value> = rows
                .iter()
                .map(|r| {
                    json!({"kind": r.kind, "subject": r.subject, "revoked_at": r.revoked_at,
                            "revoked_by": r.revoked_by, "reason": r.reason})
                })
                .collect();
            Ok((StatusCode::OK, json!({"revocations": list})))
        },
    )
    .await
}
