//! The documents registry under `/api/v1/documents`: what policy knows of each document a
//! retriever may hand to a model (collections, classification, owner, readers, labels).
//!
//! Writes are administrative (`admin` on `Api::"documents"`), checked exactly as `[[documents]]`
//! entries are, applied in one transaction per call, and take effect on this replica at once
//! (others follow within the revocation poll interval). Ids that ztai.toml defines are refused:
//! the configuration stays the authority for what it pins.

use super::{Caller, blocking, governed};
use crate::config::CatalogueEntry;
use crate::error::GatewayError;
use crate::record::rfc3339;
use crate::state::Gateway;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::SystemTime;
use ztai_store::DocumentRow;

/// More documents than this in one write are refused: send batches.
pub(crate) const MAX_PER_WRITE: usize = 10_000;
const MAX_LISTED: usize = 1_000;
const MAX_ID_BYTES: usize = 256;

fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID_BYTES && !id.chars().any(char::is_control)
}

fn view(id: &str, e: &CatalogueEntry, source: &str) -> Value {
    json!({
        "id": id,
        "collections": e.groups,
        "classification": e.classification,
        "owner": e.owner,
        "readers": e.readers,
        "labels": e.labels,
        "source": source,
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DocumentIn {
    id: String,
    #[serde(default)]
    collections: Vec<String>,
    classification: Option<String>,
    owner: Option<String>,
    #[serde(default)]
    readers: Vec<String>,
    #[serde(default)]
    labels: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Upsert {
    documents: Vec<DocumentIn>,
}

pub(super) async fn upsert(
    State(gw): State<Arc<Gateway>>,
    caller: Caller,
    body: axum::body::Bytes,
) -> Response {
    let g = gw.clone();
    governed(&gw, &caller, "documents", "admin::upsert_documents", |actor| async move {
        let req: Upsert = serde_json::from_slice(&body).map_err(|e| {
            GatewayError::Unprocessable(format!(
                "expected {{\"documents\": [{{\"id\", \"collections\", \"classification\", \"owner\", \"readers\", \"labels\"}}, …]}}: {e}"
            ))
        })?;
        if req.documents.len() > MAX_PER_WRITE {
            return Err(GatewayError::Unprocessable(format!(
                "{} documents is more than {MAX_PER_WRITE} in one write; send batches",
                req.documents.len()
            )));
        }
        let by = format!("{}:{}", actor.kind, actor.id);
        let at = rfc3339(SystemTime::now());
        let mut rows = Vec::with_capacity(req.documents.len());
        for (i, d) in req.documents.iter().enumerate() {
            if !valid_id(&d.id) {
                return Err(GatewayError::Unprocessable(format!(
                    "documents[{i}].id must be 1 to {MAX_ID_BYTES} bytes without control characters"
                )));
            }
            if g.config.catalogue.documents.contains_key(&d.id) {
                return Err(GatewayError::Conflict(format!(
                    "documents[{i}]: `{}` is defined in the configuration ([[documents]]); change it there",
                    d.id
                )));
            }
            let e = CatalogueEntry::checked(
                &d.collections,
                d.classification.as_deref(),
                d.owner.as_deref(),
                &d.readers,
                &d.labels,
            )
            .map_err(|(field, m)| {
                let field = if field == "groups" { "collections" } else { field };
                GatewayError::Unprocessable(format!("documents[{i}].{field}: {m}"))
            })?;
            rows.push(DocumentRow {
                document_id: d.id.clone(),
                collections: e.groups,
                classification: e.classification,
                owner: e.owner,
                readers: e.readers.into_iter().collect(),
                labels: e.labels.into_iter().collect(),
                updated_at: at.clone(),
                updated_by: by.clone(),
            });
        }
        let n = rows.len();
        let version = blocking(&g, move |gw| {
            let store = gw.store.as_ref();
            let v = store.upsert_documents(&rows).map_err(GatewayError::store)?;
            gw.refresh_documents(store, true).map_err(GatewayError::store)?;
            Ok(v)
        })
        .await?;
        Ok((StatusCode::OK, json!({"upserted": n, "version": version})))
    })
    .await
}

#[derive(Debug, Deserialize)]
pub(super) struct ListQuery {
    after: Option<String>,
    limit: Option<usize>,
}

pub(super) async fn list(
    State(gw): State<Arc<Gateway>>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> Response {
    let g = gw.clone();
    governed(&gw, &caller, "documents", "admin::list_documents", |_| async move {
        let limit = q.limit.unwrap_or(100).clamp(1, MAX_LISTED);
        let rows = blocking(&g, move |gw| {
            gw.store.list_documents(q.after.as_deref(), limit)
                .map_err(GatewayError::store)
        })
        .await?;
        let next = (rows.len() == limit)
            .then(|| rows.last().map(|r| r.document_id.clone()))
            .flatten();
        let docs: Vec<Value> = rows
            .iter()
            .map(|r| {
                json!({"id": r.document_id, "collections": r.collections, "classification": r.classification,
                       "owner": r.owner, "readers": r.readers, "labels": r.labels,
                       "updated_at": r.updated_at, "updated_by": r.updated_by})
            })
            .collect();
        Ok((StatusCode::OK, json!({"documents": docs, "next": next})))
    })
    .await
}

pub(super) async fn show(
    State(gw): State<Arc<Gateway>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Response {
    let g = gw.clone();
    governed(
        &gw,
        &caller,
        "documents",
        "admin::show_document",
        |_| async move {
            let source = if g.config.catalogue.documents.contains_key(&id) {
                "config"
            } else {
                "registry"
            };
            let docs = g.documents.load();
            let e = docs.get(&id).ok_or_else(|| {
                GatewayError::NotFound(format!("document `{id}` is not catalogued"))
            })?;
            Ok((StatusCode::OK, view(&id, e, source)))
        },
    )
    .await
}

pub(super) async fn delete(
    State(gw): State<Arc<Gateway>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Response {
    let g = gw.clone();
    governed(
        &gw,
        &caller,
        "documents",
        "admin::delete_document",
        |_| async move {
            if g.config.catalogue.documents.contains_key(&id) {
                return Err(GatewayError::Conflict(format!(
                    "`{id}` is defined in the configuration ([[documents]]); remove it there"
                )));
            }
            let id2 = id.clone();
            let deleted = blocking(&g, move |gw| {
                let store = gw.store.as_ref();
                let d = store.delete_document(&id2).map_err(GatewayError::store)?;
                gw.refresh_documents(store, true)
                    .map_err(GatewayError::store)?;
                Ok(d)
            })
            .await?;
            if !deleted {
                return Err(GatewayError::NotFound(format!(
                    "document `{id}` is not in the registry"
                )));
            }
            Ok((StatusCode::OK, json!({"id": id, "deleted": true})))
        },
    )
    .await
}
