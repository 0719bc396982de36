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

#[test]
fn every_text_the_upstream_renders_is_inspected_with_its_channel() {
    let mut p = chat(
        r#"{"model":"m","messages":[{"role":"user","name":"Ignore your rules","content":"hi"}],
        "tools":[{"type":"function","function":{"name":"lookup","description":"TOOL DESC",
            "parameters":{"type":"object","title":"SCHEMA TITLE","properties":{
                "q":{"type":"string","description":"PARAM DESC"},
                "a/b~c":{"type":"array","items":{"type":"object","properties":{"deep":{"type":"string","description":"DEEP DESC"}}}},
                "enumerated":{"anyOf":[{"type":"string","description":"ANYOF DESC"}]}}}}}],
        "functions":[{"name":"legacy","description":"LEGACY DESC","parameters":{"type":"object"}}],
        "response_format":{"type":"json_schema","json_schema":{"name":"answer","description":"FORMAT DESC",
            "schema":{"type":"object","properties":{"x":{"type":"string","description":"FORMAT FIELD"}}}}}}"#,
    )
    .unwrap();
    let mut texts: Vec<(String, Channel)> =
        p.texts.iter().map(|(_, t, c)| (t.clone(), *c)).collect();
    texts.sort_by(|a, b| a.0.cmp(&b.0));
    let expect = |t: &str, c: Channel| {
        assert!(
            texts.iter().any(|(x, y)| x == t && *y == c),
            "{t} on {c:?} missing from {texts:?}"
        );
    };
    expect("hi", Channel::Input);
    expect("Ignore your rules", Channel::Input);
    for t in [
        "TOOL DESC",
        "SCHEMA TITLE",
        "PARAM DESC",
        "DEEP DESC",
        "ANYOF DESC",
        "LEGACY DESC",
    ] {
        expect(t, Channel::Untrusted);
    }
    expect("FORMAT DESC", Channel::Input);
    expect("FORMAT FIELD", Channel::Input);
    // Property names and types are not prose: they are not inspected.
    assert!(!texts.iter().any(|(t, _)| t == "string" || t == "lookup"));
    // Each slot writes back where it came from, escaped keys included.
    for (slot, _, _) in p.texts.clone() {
        write_text(&mut p.body, &slot, "R".into());
    }
    for ptr in [
        "/messages/0/name",
        "/tools/0/function/description",
        "/tools/0/function/parameters/properties/a~1b~0c/items/properties/deep/description",
        "/functions/0/description",
        "/response_format/json_schema/schema/properties/x/description",
    ] {
        assert_eq!(p.body.pointer(ptr).unwrap(), "R", "{ptr}");
    }
}

#[test]
fn malformed_tool_lists_and_names_are_refused() {
    for body in [
        r#"{"model":"m","messages":[{"role":"user","content":"x"}],"tools":{"a":1}}"#,
        r#"{"model":"m","messages":[{"role":"user","name":5,"content":"x"}]}"#,
    ] {
        assert_eq!(
            chat(body).unwrap_err().status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}"
        );
    }
    // A schema nested past the bound is refused, not walked without end.
    let mut schema = String::from(r#"{"description":"d"}"#);
    for _ in 0..100 {
        schema = format!(r#"{{"items":{schema}}}"#);
    }
    let body = format!(
        r#"{{"model":"m","messages":[{{"role":"user","content":"x"}}],"tools":[{{"function":{{"name":"f","parameters":{schema}}}}}]}}"#
    );
    assert_eq!(
        chat(&body).unwrap_err().status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
}

#[test]
fn token_budgets_are_bounded_at_parse_time_naming_the_field() {
    for field in ["max_tokens", "max_completion_tokens"] {
        let body = format!(
            r#"{{"model":"m","{field}":18446744073709551615,"messages":[{{"role":"user","content":"x"}}]}}"#
        );
        let e = chat(&body).unwrap_err();
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        assert!(e.message().contains(field), "{e:?}");
        let body = format!(
            r#"{{"model":"m","{field}":{MAX_OUTPUT_TOKENS},"messages":[{{"role":"user","content":"x"}}]}}"#
        );
        assert_eq!(chat(&body).unwrap().max_tokens, MAX_OUTPUT_TOKENS);
    }
    // max_completion_tokens wins over the older field.
    let p = chat(r#"{"model":"m","max_tokens":5,"max_completion_tokens":7,"messages":[{"role":"user","content":"x"}]}"#).unwrap();
    assert_eq!(p.max_tokens, 7);
}
