//! The deployment gate: which registered model version takes a model's traffic.
//!
//! A model configured with `registry = true` is routed only to its deployed version — one that
//! was verified (signature and scan), approved and deployed through the registry. The routes are
//! an in-memory snapshot swapped whole (`ArcSwap`): every registry change made through this
//! gateway rebuilds it before the admin call returns, so a quarantine takes the version out of
//! routing for the very next request; changes made elsewhere are picked up on the revocation
//! poll. When the deployed version leaves (quarantined, revoked, retired) the model falls back
//! to its most recently deployed version that is still approved, if the model allows fallback;
//! otherwise requests are refused with the reason.

use std::collections::HashMap;

use ztai_core::ModelState;
use ztai_store::prelude::*;
use ztai_store::{ModelVersionRow, StoreError};

/// Where a gated model's traffic goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    To {
        version: String,
        upstream_model: String,
        /// The deployed version is out and this known-good one stands in.
        fallback: bool,
    },
    Refused(String),
}

#[derive(Debug, Default)]
pub(crate) struct ModelRoutes {
    routes: HashMap<String, Route>,
}

impl ModelRoutes {
    pub(crate) fn load(store: &dyn RegistryStore) -> Result<Self, StoreError> {
        let mut routes = HashMap::new();
        let versions = store.model_versions(None)?;
        for model in store.registered_models()? {
            let mine: Vec<&ModelVersionRow> =
                versions.iter().filter(|v| v.model == model.name).collect();
            routes.insert(model.name.clone(), route_for(&mine, model.fallback));
        }
        Ok(Self { routes })
    }

    /// The route of a gated model; a model the registry does not know is refused.
    pub(crate) fn route(&self, model: &str) -> Route {
        self.routes.get(model).cloned().unwrap_or_else(|| {
            Route::Refused(format!(
                "model `{model}` is gated by the model registry but is not registered there; register, verify, approve and deploy a version first"
            ))
        })
    }
}

fn route_for(versions: &[&ModelVersionRow], fallback: bool) -> Route {
    if let Some(v) = versions.iter().find(|v| v.state.routable()) {
        return Route::To {
            version: v.version.clone(),
            upstream_model: v.upstream_model.clone(),
            fallback: false,
        };
    }
    // The deployed version left: who left, and why, is what the refusal or fallback reports.
    let last = versions
        .iter()
        .filter(|v| v.deployed_at.is_some())
        .max_by_key(|v| (v.deployed_at, v.updated_at));
    if fallback
        && let Some(good) = versions
            .iter()
            .filter(|v| v.state == ModelState::Approved && v.deployed_at.is_some())
            .max_by_key(|v| v.deployed_at)
    {
        return Route::To {
            version: good.version.clone(),
            upstream_model: good.upstream_model.clone(),
            fallback: true,
        };
    }
    let why = match last {
        Some(v) => format!(
            "its deployed version `{}` is {}{}",
            v.version,
            v.state,
            if v.state_reason.is_empty() {
                String::new()
            } else {
                format!(" ({})", v.state_reason)
            }
        ),
        None => "no version has been deployed".to_string(),
    };
    let fallback_note = if fallback {
        "no earlier known-good version to fall back to"
    } else {
        "fallback is off for this model"
    };
    Route::Refused(format!("model unavailable: {why}; {fallback_note}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(version: &str, state: ModelState, deployed_at: Option<i64>) -> ModelVersionRow {
        ModelVersionRow {
            model: "m".into(),
            version: version.into(),
            state,
            path: String::new(),
            signature_path: String::new(),
            upstream_model: format!("m-{version}"),
            lineage: serde_json::Value::Null,
            root_digest: None,
            signer: None,
            signer_fingerprints: vec![],
            scan: None,
            state_reason: if state == ModelState::Quarantined {
                "incident 7".into()
            } else {
                String::new()
            },
            registered_by: String::new(),
            registered_at: 0,
            updated_by: String::new(),
            updated_at: deployed_at.unwrap_or(0),
            deployed_at,
        }
    }

    #[test]
    fn only_the_deployed_version_routes_and_fallback_is_the_last_known_good() {
        let (v1, v2, v3) = (
            v("1", ModelState::Approved, Some(10)),
            v("2", ModelState::Approved, Some(20)),
            v("3", ModelState::Deployed, Some(30)),
        );
        assert_eq!(
            route_for(&[&v1, &v2, &v3], true),
            Route::To {
                version: "3".into(),
                upstream_model: "m-3".into(),
                fallback: false
            }
        );
        let q3 = v("3", ModelState::Quarantined, Some(30));
        assert_eq!(
            route_for(&[&v1, &v2, &q3], true),
            Route::To {
                version: "2".into(),
                upstream_model: "m-2".into(),
                fallback: true
            }
        );
        match route_for(&[&v1, &v2, &q3], false) {
            Route::Refused(why) => assert!(
                why.contains("`3` is quarantined (incident 7)") && why.contains("fallback is off"),
                "{why}"
            ),
            other => panic!("{other:?}"),
        }
        // Verified or approved but never deployed versions are not known-good.
        let (a, b) = (
            v("1", ModelState::Approved, None),
            v("2", ModelState::Verified, None),
        );
        assert!(
            matches!(route_for(&[&a, &b], true), Route::Refused(ref w) if w.contains("no version has been deployed"))
        );
        assert!(
            matches!(ModelRoutes::default().route("x"), Route::Refused(ref w) if w.contains("not registered"))
        );
    }
}
