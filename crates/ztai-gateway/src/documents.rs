//! The documents catalogue as the gateway reads it: `[[documents]]` from the configuration plus
//! the registry in the store (`/api/v1/documents`, `ztai documents import`), which is how a RAG
//! deployment catalogues more documents than a configuration file should hold.
//!
//! Lookups are on the request path (a retrieval batch does up to 10,000), so the catalogue is an
//! in-memory map swapped whole (`ArcSwap`): a batch takes one snapshot and sees one catalogue.
//! Configuration entries win over stored ones with the same id, and the admin API refuses to
//! write or delete those ids, so what ztai.toml pins cannot be changed behind it. The store keeps
//! a version counter that every write bumps; each replica re-reads when it changes (on the same
//! tick that follows revocations), and the replica that made a change re-reads at once.

use crate::config::{CatalogueEntry, Config};
use std::collections::HashMap;
use ztai_store::StoreError;
use ztai_store::prelude::*;

/// Ids, collections, readers and labels read per store page.
const PAGE: usize = 10_000;

/// The whole catalogue of documents, by id.
pub(crate) type Documents = HashMap<String, CatalogueEntry>;

/// Reads the store's registry and lays the configuration's entries over it. A stored row that no
/// longer passes the checks (edited by hand) is left out, so it is withheld, and reported.
pub(crate) fn load(
    config: &Config,
    store: &dyn DocumentStore,
) -> Result<(Documents, i64), StoreError> {
    let version = store.documents_version()?;
    let mut out = HashMap::new();
    let mut after: Option<String> = None;
    loop {
        let page = store.list_documents(after.as_deref(), PAGE)?;
        let last = page.last().map(|r| r.document_id.clone());
        for row in page {
            match CatalogueEntry::checked(
                &row.collections,
                Some(&row.classification),
                Some(&row.owner),
                &row.readers,
                &row.labels,
            ) {
                Ok(entry) => {
                    out.insert(row.document_id, entry);
                }
                Err((field, message)) => tracing::error!(
                    document = %row.document_id, field, error = %message,
                    "a stored document is invalid; it is withheld until fixed"
                ),
            }
        }
        match last {
            Some(id) => after = Some(id),
            None => break,
        }
    }
    for (id, entry) in &config.catalogue.documents {
        out.insert(id.clone(), entry.clone());
    }
    Ok((out, version))
}
