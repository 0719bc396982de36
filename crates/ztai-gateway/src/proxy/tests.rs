use super::*;

fn chat(body: &str) -> Result<ParsedRequest, GatewayError> {
    parse_request(Operation::Chat, body.as_bytes())
}

#[test]
fn a_chat_request_yields_its_texts_with_channels() {
    let p = chat(r#"{"model":"m","stream":true,"max_tokens":10,"messages":[
        {"role":"system","content":"be nice"},
        {"role":"user","content":[{"type":"text","text":"hi"},{"type":"text","text":"there"}]},
        {"role":"assistant","content":null,"tool_calls":[{"function":{"name":"f","arguments":"{\"a\":1}"}}]},
        {"role":"tool","content":"doc text"}]}"#)
    .unwrap();
    assert_eq!(p.model, "m");
    assert!(p.stream);
    assert_eq!(p.max_tokens, 10);
    let texts: Vec<(&str, Channel)> = p.texts.iter().map(|(_, t, c)| (t.as_str(), *c)).collect();
    assert_eq!(
        texts,
        vec![
            ("be nice", Channel::Input),
            ("hi", Channel::Input),
            ("there", Channel::Input),
            ("{\"a\":1}", Channel::Input),
            ("doc text", Channel::Untrusted),
        ]
    );
}

#[test]
fn malformed_bodies_are_400_and_wrong_shapes_422() {
    let cases: &[(&[u8], StatusCode)] = &[
        (b"{not json", StatusCode::BAD_REQUEST),
        (b"\xff\xfe{}", StatusCode::BAD_REQUEST),
        (b"", StatusCode::BAD_REQUEST),
        (b"[]", StatusCode::UNPROCESSABLE_ENTITY),
        (br#"{"messages":[{"role":"user","content":"x"}]}"#, StatusCode::UNPROCESSABLE_ENTITY),
        (br#"{"model":5,"messages":[]}"#, StatusCode::UNPROCESSABLE_ENTITY),
        (br#"{"model":"m","messages":[]}"#, StatusCode::UNPROCESSABLE_ENTITY),
        (br#"{"model":"m","messages":"hi"}"#, StatusCode::UNPROCESSABLE_ENTITY),
        (br#"{"model":"m","messages":[{"content":"x"}]}"#, StatusCode::UNPROCESSABLE_ENTITY),
        (br#"{"model":"m","messages":[{"role":"root","content":"x"}]}"#, StatusCode::UNPROCESSABLE_ENTITY),
        (br#"{"model":"m","messages":[{"role":"user","content":7}]}"#, StatusCode::UNPROCESSABLE_ENTITY),
        (br#"{"model":"m","stream":"yes","messages":[{"role":"user","content":"x"}]}"#, StatusCode::UNPROCESSABLE_ENTITY),
        (br#"{"model":"m","max_tokens":-1,"messages":[{"role":"user","content":"x"}]}"#, StatusCode::UNPROCESSABLE_ENTITY),
        (br#"{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}"#, StatusCode::UNPROCESSABLE_ENTITY),
    ];
    for (body, status) in cases {
        let e = parse_request(Operation::Chat, body).unwrap_err();
        assert_eq!(
            e.status(),
            *status,
            "{:?}: {e:?}",
            String::from_utf8_lossy(body)
        );
        assert!(!e.message().is_empty());
    }
}

#[test]
fn token_id_inputs_are_refused_because_they_cannot_be_inspected() {
    let e = parse_request(Operation::Embedding, br#"{"model":"m","input":[[1,2,3]]}"#).unwrap_err();
    assert_eq!(e.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(e.message().contains("token-id"));
    let ok = parse_request(
        Operation::Completion,
        br#"{"model":"m","prompt":["a","b"]}"#,
    )
    .unwrap();
    assert_eq!(ok.texts.len(), 2);
}

#[test]
fn redacted_text_is_written_back_to_its_slot() {
    let mut p = chat(
        r#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"a"}]},
        {"role":"assistant","content":null,"tool_calls":[{"function":{"arguments":"x"}}]}]}"#,
    )
    .unwrap();
    for (slot, _, _) in p.texts.clone() {
        write_text(&mut p.body, &slot, "R".into());
    }
    assert_eq!(p.body.pointer("/messages/0/content/0/text").unwrap(), "R");
    assert_eq!(
        p.body
            .pointer("/messages/1/tool_calls/0/function/arguments")
            .unwrap(),
        "R"
    );
}

#[test]
fn upstream_errors_never_blame_the_client_for_the_gateways_key() {
    let e = upstream_error(StatusCode::UNAUTHORIZED, "u", b"{}");
    assert_eq!(e.status(), StatusCode::BAD_GATEWAY);
    let e = upstream_error(StatusCode::INTERNAL_SERVER_ERROR, "u", b"secret internals");
    assert_eq!(e.status(), StatusCode::BAD_GATEWAY);
    assert!(!e.message().contains("internals"));
}

#[test]
fn content_events_follow_the_upstream_shape() {
    let t = json!({"id":"x","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"a"}}],"usage":{"total_tokens":3}});
    let e = content_event(Some(&t), 0, "hello");
    assert_eq!(e.pointer("/choices/0/delta/content").unwrap(), "hello");
    assert!(e.get("usage").is_none());
    let t = json!({"object":"text_completion","choices":[{"index":0,"text":"a"}]});
    assert_eq!(
        content_event(Some(&t), 1, "x")
            .pointer("/choices/0/text")
            .unwrap(),
        "x"
    );
}
