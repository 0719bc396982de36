//! In-process tests of the layer every endpoint runs under: a router, no sockets, no binary.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use axum::Router;
use axum::routing::get;
use std::path::Path;
use tower::ServiceExt;

/// A gateway over a fresh data directory and the repository's sample policies.
pub(crate) fn gateway(dir: &Path) -> Arc<Gateway> {
    let policies = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies");
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n[storage]\ndata_dir = {:?}\n[policy]\ndir = {:?}\n[[upstreams]]\nname = \"u\"\nbase_url = \"http://127.0.0.1:9/v1\"\n[[models]]\nname = \"m\"\nupstream = \"u\"\ngroups = [\"g\"]\n",
        dir.display().to_string(),
        policies.display().to_string()
    );
    Gateway::new(crate::Config::parse(&text, dir).unwrap()).unwrap()
}

fn records(gw: &Gateway) -> Vec<serde_json::Value> {
    gw.store
        .audit_rows_after(0, 1000)
        .unwrap()
        .into_iter()
        .map(|r| serde_json::from_str(&r.record_json).unwrap())
        .collect()
}

fn app(gw: &Arc<Gateway>, handler_panics: bool) -> Router {
    Router::new()
        .route(
            "/boom",
            get(move || async move {
                if handler_panics {
                    panic!("boom in the handler");
                }
                "fine"
            }),
        )
        .layer(axum::middleware::from_fn_with_state(gw.clone(), detached))
}

async fn send_get(app: Router, path: &str) -> axum::response::Response {
    app.oneshot(
        http::Request::get(path)
            .body(axum::body::Body::empty())
            .unwrap(),
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_is_answered_500_and_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(dir.path());
    let before = records(&gw).len();
    let resp = send_get(app(&gw, true), "/boom").await;
    assert_eq!(resp.status(), 500);
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"]["code"], "internal_error");
    // Nothing about the panic reaches the client.
    assert!(!body.to_string().contains("boom"), "{body}");
    let all = records(&gw);
    assert_eq!(all.len(), before + 1);
    let r = all.last().unwrap();
    assert_eq!(r["id"], id.as_str());
    assert_eq!(r["status"], 500);
    assert_eq!(r["decision"], "deny");
    assert_eq!(r["resource"], "Route::\"GET /boom\"");
    assert!(
        r["reason"]
            .as_str()
            .unwrap()
            .contains("boom in the handler"),
        "{r}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_returns_passes_through_unrecorded_by_the_layer() {
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(dir.path());
    let before = records(&gw).len();
    let resp = send_get(app(&gw, false), "/boom").await;
    assert_eq!(resp.status(), 200);
    // The layer records only what the handler could not; the handler's own record is its own.
    assert_eq!(records(&gw).len(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_finishes_its_work_after_the_caller_gives_up() {
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(dir.path());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let tx = Arc::new(std::sync::Mutex::new(Some(tx)));
    let app = Router::new()
        .route(
            "/slow",
            get(move || {
                let tx = tx.lock().unwrap().take();
                async move {
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    // The effect a cancelled handler would never reach.
                    if let Some(tx) = tx {
                        let _ = tx.send(());
                    }
                    "done"
                }
            }),
        )
        .layer(axum::middleware::from_fn_with_state(gw.clone(), detached));
    let call = send_get(app, "/slow");
    // The caller gives up after 20 ms: its future is dropped, as hyper drops it on a disconnect.
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(20), call)
            .await
            .is_err()
    );
    tokio::time::timeout(std::time::Duration::from_secs(5), rx)
        .await
        .expect("the handler ran to the end after its caller left")
        .unwrap();
}
