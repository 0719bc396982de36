//! A stand-in model upstream: a small OpenAI-compatible server that answers deterministically.
//!
//! It is what the quick start and the tests put behind the gateway in place of a real model server
//! (vLLM, Ollama, OpenAI…). It echoes the last user message back, so redaction and blocking by the
//! gateway are visible in the answer (a last message of `/echo-conversation` echoes every message,
//! system prompt included, like a model leaking its context), and it streams that echo in small
//! fixed-size chunks, so values
//! split across chunks are exercised. A few upstream model names make it misbehave on purpose
//! (`fault-500`, `fault-slow`, `fault-bad-sse`, `fault-stall`, `fault-garbage`), so the gateway's
//! handling of broken upstreams can be tested against a real socket. It is not a model and is never
//! meant for production traffic.

pub mod mcp;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use futures_util::stream;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// How the stand-in behaves.
#[derive(Debug, Clone)]
pub struct StandinConfig {
    /// Characters per streamed chunk.
    pub chunk_chars: usize,
    /// Model names listed by `GET /v1/models`.
    pub models: Vec<String>,
    /// When set, requests must carry `Authorization: Bearer <key>` (to prove the gateway injects
    /// the upstream's key and never forwards the client's).
    pub required_key: Option<String>,
}

impl Default for StandinConfig {
    fn default() -> Self {
        StandinConfig {
            chunk_chars: 8,
            models: vec!["standin-echo".into()],
            required_key: None,
        }
    }
}

/// The stand-in's routes.
pub fn router(config: StandinConfig) -> Router {
    let state = Arc::new(config);
    Router::new()
        .route("/v1/models", get(models))
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .route("/v1/embeddings", post(embeddings))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(state)
}

/// Serves the stand-in on `listener` until the task is dropped.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: StandinConfig,
) -> std::io::Result<()> {
    axum::serve(listener, router(config)).await
}

type Shared = Arc<StandinConfig>;

fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": {"message": message, "type": "standin_error", "code": null}})),
    )
        .into_response()
}

fn authorised(cfg: &StandinConfig, headers: &HeaderMap) -> bool {
    match &cfg.required_key {
        None => true,
        Some(key) => headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|v| v == key),
    }
}

async fn models(State(cfg): State<Shared>, headers: HeaderMap) -> Response {
    if !authorised(&cfg, &headers) {
        return error(
            StatusCode::UNAUTHORIZED,
            "stand-in: missing or wrong upstream key",
        );
    }
    let data: Vec<Value> = cfg
        .models
        .iter()
        .map(|m| json!({"id": m, "object": "model", "created": 0, "owned_by": "ztai-standin"}))
        .collect();
    axum::Json(json!({"object": "list", "data": data})).into_response()
}

/// Text of a message's `content`: a string, or the text parts of an array.
fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

fn tokens(text: &str) -> usize {
    text.chars().count().div_ceil(4)
}

/// Common handling of the deliberate faults; `None` means behave.
async fn fault(model: &str) -> Option<Response> {
    match model {
        "fault-500" => Some(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "stand-in: simulated upstream failure",
        )),
        "fault-slow" => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Some(error(StatusCode::GATEWAY_TIMEOUT, "stand-in: too slow"))
        }
        "fault-garbage" => Some(
            Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from("{this is not json"))
                .unwrap_or_else(|_| error(StatusCode::INTERNAL_SERVER_ERROR, "stand-in")),
        ),
        _ => None,
    }
}

/// What every POST endpoint does first: check the upstream key, parse the body, act out a
/// deliberate fault. `Err` is the answer to send instead.
async fn prologue(
    cfg: &StandinConfig,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(Value, String), Response> {
    if !authorised(cfg, headers) {
        return Err(error(
            StatusCode::UNAUTHORIZED,
            "stand-in: missing or wrong upstream key",
        ));
    }
    let Ok(req) = serde_json::from_slice::<Value>(body) else {
        return Err(error(StatusCode::BAD_REQUEST, "stand-in: body is not JSON"));
    };
    let model = req
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("standin-echo")
        .to_string();
    match fault(&model).await {
        Some(r) => Err(r),
        None => Ok((req, model)),
    }
}

async fn chat(State(cfg): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let (req, model) = match prologue(&cfg, &headers, &body).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let prompt: String = req
        .get("messages")
        .and_then(Value::as_array)
        .map(|msgs| {
            msgs.iter()
                .map(|m| m.get("content").map(content_text).unwrap_or_default())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default();
    let answer = req
        .get("messages")
        .and_then(Value::as_array)
        .and_then(|msgs| {
            msgs.iter()
                .rev()
                .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        })
        .and_then(|m| m.get("content"))
        .map(content_text)
        .unwrap_or_default();
    // A model that leaks its whole context (system prompt included), on request: what the
    // gateway's canary and echo checks exist to catch.
    let answer = if answer.trim() == "/echo-conversation" {
        prompt.clone()
    } else {
        answer
    };
    let stream = req.get("stream").and_then(Value::as_bool).unwrap_or(false);
    if stream {
        return sse(&cfg, &model, &answer, "chat.completion.chunk", true);
    }
    axum::Json(json!({
        "id": "chatcmpl-standin",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": tokens(&prompt), "completion_tokens": tokens(&answer), "total_tokens": tokens(&prompt) + tokens(&answer)}
    }))
    .into_response()
}

async fn completions(State(cfg): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let (req, model) = match prologue(&cfg, &headers, &body).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let prompt = match req.get("prompt") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    };
    if req.get("stream").and_then(Value::as_bool).unwrap_or(false) {
        return sse(&cfg, &model, &prompt, "text_completion", false);
    }
    axum::Json(json!({
        "id": "cmpl-standin",
        "object": "text_completion",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "text": prompt, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": tokens(&prompt), "completion_tokens": tokens(&prompt), "total_tokens": 2 * tokens(&prompt)}
    }))
    .into_response()
}

async fn embeddings(State(cfg): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let (req, model) = match prologue(&cfg, &headers, &body).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let inputs: Vec<String> = match req.get("input") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => vec![],
    };
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, text)| json!({"object": "embedding", "index": i, "embedding": embed(text)}))
        .collect();
    let total: usize = inputs.iter().map(|t| tokens(t)).sum();
    axum::Json(json!({"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": total, "total_tokens": total}}))
        .into_response()
}

/// A deterministic 8-dimensional vector derived from the text (FNV-1a per dimension).
fn embed(text: &str) -> Vec<f32> {
    (0u64..8)
        .map(|d| {
            let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ d;
            for b in text.bytes() {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
            ((h % 2000) as f32 / 1000.0) - 1.0
        })
        .collect()
}

fn sse(cfg: &StandinConfig, model: &str, answer: &str, object: &str, chat: bool) -> Response {
    let chars: Vec<char> = answer.chars().collect();
    let mut events: Vec<String> = Vec::new();
    let piece = |text: &str, finish: Option<&str>| {
        let choice = if chat {
            json!({"index": 0, "delta": {"content": text}, "finish_reason": finish})
        } else {
            json!({"index": 0, "text": text, "finish_reason": finish})
        };
        json!({"id": "standin-stream", "object": object, "created": 0, "model": model, "choices": [choice]})
    };
    if chat {
        events.push(
            json!({"id": "standin-stream", "object": object, "created": 0, "model": model,
                   "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}]})
            .to_string(),
        );
    }
    for chunk in chars.chunks(cfg.chunk_chars.max(1)) {
        let text: String = chunk.iter().collect();
        events.push(piece(&text, None).to_string());
    }
    events.push(piece("", Some("stop")).to_string());
    let bad = model == "fault-bad-sse";
    let stall = model == "fault-stall";
    let mut frames: Vec<Result<Bytes, std::io::Error>> = Vec::new();
    for (i, e) in events.into_iter().enumerate() {
        if bad && i == 1 {
            frames.push(Ok(Bytes::from(
                "data: {\"choices\": [ this is not json\n\n",
            )));
            continue;
        }
        frames.push(Ok(Bytes::from(format!("data: {e}\n\n"))));
    }
    if !stall {
        frames.push(Ok(Bytes::from("data: [DONE]\n\n")));
    }
    let body_stream = stream::iter(frames);
    let body = if stall {
        // Send what we have, then hang without closing, as a wedged upstream would.
        use futures_util::StreamExt;
        Body::from_stream(body_stream.chain(stream::pending()))
    } else {
        Body::from_stream(body_stream)
    };
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(body)
        .unwrap_or_else(|_| {
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "stand-in: cannot build stream",
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_parts_are_joined() {
        let v = json!([{"type": "text", "text": "a"}, {"type": "image_url"}, {"type": "text", "text": "b"}]);
        assert_eq!(content_text(&v), "ab");
        assert_eq!(content_text(&json!(5)), "");
    }

    #[test]
    fn embeddings_are_deterministic_and_differ_by_text() {
        assert_eq!(embed("x"), embed("x"));
        assert_ne!(embed("x"), embed("y"));
        assert_eq!(embed("x").len(), 8);
    }
}
