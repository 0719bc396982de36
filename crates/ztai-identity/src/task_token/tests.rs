use super::*;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE;

const NOW: u64 = 1_800_000_000;

fn grant() -> TaskGrant {
    TaskGrant {
        agent: "support-bot".into(),
        user: "alice".into(),
        user_groups: vec!["staff".into()],
        task: Some("answer ticket 42".into()),
        rights: vec![
            Right::new("model", "small"),
            Right::new("model", "large"),
            Right::new("tool", "orders.lookup"),
        ],
        expires_at: NOW + 900,
    }
}

fn minted() -> (TokenAuthority, String) {
    let a = TokenAuthority::generate();
    let t = a.issue(&grant(), NOW).unwrap();
    (a, t)
}

/// Appends a block written in raw Datalog, as an attacker with the Biscuit library would.
fn append_raw(token: &str, code: &str) -> String {
    let t = UnverifiedBiscuit::from_base64(token).unwrap();
    t.append(BlockBuilder::new().code(code).unwrap())
        .unwrap()
        .to_base64()
        .unwrap()
}

#[test]
fn a_minted_token_grants_its_rights_and_nothing_else() {
    let (a, t) = minted();
    let v = a.verifier().verify(&t).unwrap();
    assert_eq!(v.agent, "support-bot");
    assert_eq!(v.user, "alice");
    assert_eq!(v.user_groups, vec!["staff"]);
    assert_eq!(v.expires_at, NOW + 900);
    v.authorize("model", "small", NOW).unwrap();
    v.authorize("tool", "orders.lookup", NOW).unwrap();
    let e = v.authorize("model", "secret-model", NOW).unwrap_err();
    assert!(
        e.to_string()
            .contains("does not grant model `secret-model`"),
        "{e}"
    );
    assert!(v.authorize("tool", "send_email", NOW).is_err());
}

#[test]
fn the_principal_is_the_agent_acting_for_the_user() {
    let (a, t) = minted();
    let v = a.verifier().verify(&t).unwrap();
    let p = v.principal(vec!["agents".into()]);
    assert_eq!(p.kind, PrincipalKind::Agent);
    assert_eq!(p.chain(), vec!["user:alice", "agent:support-bot"]);
    assert!(p.credential_id.starts_with("task_token:"));
    assert_eq!(p.credential_id.len(), "task_token:".len() + 128);
}

#[test]
fn an_expired_token_is_refused() {
    let (a, t) = minted();
    let v = a.verifier().verify(&t).unwrap();
    let e = v.authorize("model", "small", NOW + 901).unwrap_err();
    assert!(matches!(e, TaskTokenError::Expired(_)), "{e}");
}

#[test]
fn narrowing_keeps_only_what_it_names_and_sub_agents_form_the_chain() {
    let (a, t) = minted();
    let n = attenuate(
        &t,
        &Narrowing {
            delegate_to: Some("summariser".into()),
            only: BTreeMap::from([("model".to_string(), vec!["small".to_string()])]),
            expires_at: Some(NOW + 60),
        },
        NOW,
    )
    .unwrap();
    let v = a.verifier().verify(&n).unwrap();
    v.authorize("model", "small", NOW).unwrap();
    // Tools were not narrowed, so they stay as the authority block granted them.
    v.authorize("tool", "orders.lookup", NOW).unwrap();
    let e = v.authorize("model", "large", NOW).unwrap_err();
    assert!(e.to_string().contains("block 1 narrows it away"), "{e}");
    assert!(matches!(
        v.authorize("model", "small", NOW + 61),
        Err(TaskTokenError::Expired(_))
    ));
    assert_eq!(v.actor(), "summariser");
    assert_eq!(
        v.principal(vec![]).chain(),
        vec!["user:alice", "agent:support-bot", "agent:summariser"]
    );
    // Both blocks' revocation ids are listed; the first is the original token's.
    let original = a.verifier().verify(&t).unwrap();
    assert_eq!(v.revocation_ids.len(), 2);
    assert_eq!(v.revocation_ids.first(), original.revocation_ids.first());
    let r = inspect(&n).unwrap();
    assert_eq!(r.delegates, vec!["summariser"]);
    assert_eq!(r.expires_at, Some(NOW + 60));
    assert_eq!(
        r.effective_rights,
        vec![
            Right::new("model", "small"),
            Right::new("tool", "orders.lookup")
        ]
    );
}

#[test]
fn a_block_that_grants_itself_a_right_gains_nothing() {
    let (a, t) = minted();
    for code in [
        r#"right("model", "secret-model");"#,
        r#"right("model", "*");"#,
        r#"right($k, $n) <- resource($k, $n);"#,
    ] {
        let widened = append_raw(&t, code);
        let v = a.verifier().verify(&widened).unwrap();
        assert!(
            v.authorize("model", "secret-model", NOW).is_err(),
            "widening with {code} worked"
        );
        v.authorize("model", "small", NOW).unwrap();
    }
}

#[test]
fn a_later_expiry_in_an_appended_block_does_not_extend_the_token() {
    let (a, t) = minted();
    let later = NOW + 86_400;
    let widened = append_raw(
        &t,
        &format!(
            "expires({}); check if time($t), $t <= {};",
            rfc3339(later),
            rfc3339(later)
        ),
    );
    let v = a.verifier().verify(&widened).unwrap();
    // The claim is ignored for the reported expiry…
    assert_eq!(v.expires_at, NOW + 900);
    // …and the authority block's check still refuses, even if the earlier-expiry shortcut were
    // skipped: the Datalog is the enforcement.
    let mut forged = v.clone();
    forged.expires_at = later;
    let e = forged.authorize("model", "small", NOW + 1000).unwrap_err();
    assert!(matches!(e, TaskTokenError::Expired(_)), "{e}");
    // The library refuses to write such a block in the first place.
    let e = attenuate(
        &t,
        &Narrowing {
            expires_at: Some(later),
            ..Default::default()
        },
        NOW,
    )
    .unwrap_err();
    assert!(e.to_string().contains("cannot outlive"), "{e}");
}

#[test]
fn a_sub_agent_token_cannot_outlive_its_parent() {
    let (a, t) = minted();
    let parent = attenuate(
        &t,
        &Narrowing {
            delegate_to: Some("planner".into()),
            expires_at: Some(NOW + 60),
            ..Default::default()
        },
        NOW,
    )
    .unwrap();
    let child = append_raw(
        &parent,
        &format!(
            "delegate(\"summariser\"); check if time($t), $t <= {};",
            rfc3339(NOW + 600)
        ),
    );
    let v = a.verifier().verify(&child).unwrap();
    v.authorize("model", "small", NOW + 30).unwrap();
    let mut forged = v.clone();
    forged.expires_at = NOW + 600;
    assert!(matches!(
        forged.authorize("model", "small", NOW + 120),
        Err(TaskTokenError::Expired(_))
    ));
}

#[test]
fn narrowing_cannot_name_what_the_token_does_not_grant() {
    let (_, t) = minted();
    let e = attenuate(
        &t,
        &Narrowing {
            only: BTreeMap::from([("tool".to_string(), vec!["send_email".to_string()])]),
            ..Default::default()
        },
        NOW,
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("does not grant tool `send_email`"),
        "{e}"
    );
    assert!(attenuate(&t, &Narrowing::default(), NOW).is_err());
}

#[test]
fn a_token_minted_by_another_key_is_refused() {
    let (a, _) = minted();
    let other = TokenAuthority::generate();
    let forged = other.issue(&grant(), NOW).unwrap();
    assert_eq!(
        a.verifier().verify(&forged).unwrap_err(),
        TaskTokenError::BadSignature
    );
}

#[test]
fn any_altered_byte_is_refused() {
    let (a, t) = minted();
    let n = attenuate(
        &t,
        &Narrowing {
            delegate_to: Some("summariser".into()),
            ..Default::default()
        },
        NOW,
    )
    .unwrap();
    let bytes = URL_SAFE.decode(n.trim()).unwrap();
    let verifier = a.verifier();
    let mut accepted = Vec::new();
    for i in 0..bytes.len() {
        let mut b = bytes.clone();
        if let Some(x) = b.get_mut(i) {
            *x ^= 0x01;
        }
        if verifier.verify(&URL_SAFE.encode(&b)).is_ok() {
            accepted.push(i);
        }
    }
    assert!(
        accepted.is_empty(),
        "altered bytes accepted at {accepted:?}"
    );
}

#[test]
fn a_block_re_signed_with_another_key_is_refused() {
    // Take a narrowed token and graft its second block onto a token from another authority
    // with the same authority facts: the chain of block keys no longer matches.
    let (a, t) = minted();
    let narrowed = append_raw(&t, r#"check if resource("model", "small");"#);
    let other = TokenAuthority::generate();
    let foreign = other.issue(&grant(), NOW).unwrap();
    let foreign_narrowed = append_raw(&foreign, r#"right("model", "secret-model");"#);
    let ours = URL_SAFE.decode(narrowed.trim()).unwrap();
    let theirs = URL_SAFE.decode(foreign_narrowed.trim()).unwrap();
    // Splice: our prefix (authority) with their tail (block and proof).
    let cut = ours.len() / 2;
    let mut spliced = ours.get(..cut).unwrap().to_vec();
    spliced.extend_from_slice(theirs.get(cut.min(theirs.len())..).unwrap());
    assert!(a.verifier().verify(&URL_SAFE.encode(&spliced)).is_err());
}

#[test]
fn hostile_input_gets_an_error_not_a_panic() {
    let (a, t) = minted();
    let v = a.verifier();
    let huge = "A".repeat(MAX_TOKEN_BYTES + 1);
    for bad in [
        "",
        "not a token",
        "eyJhbGciOiJub25lIn0.e30.",
        "%%%%",
        huge.as_str(),
    ] {
        assert!(v.verify(bad).is_err(), "{bad:.20}");
        assert!(inspect(bad).is_err());
    }
    assert_eq!(v.verify(&huge).unwrap_err(), TaskTokenError::TooLarge);
    let mut long = t.clone();
    for i in 0..MAX_BLOCKS {
        long = append_raw(&long, &format!("note({i});"));
    }
    assert!(matches!(
        v.verify(&long).unwrap_err(),
        TaskTokenError::TooManyBlocks(_)
    ));
}

#[test]
fn a_runaway_block_is_stopped_by_the_limits() {
    let (a, t) = minted();
    // 30 facts joined three ways make 27,000 facts, far past the authorizer's bound.
    let mut code: String = (0..30).map(|i| format!("q({i}); ")).collect();
    code.push_str("p($a, $b, $c) <- q($a), q($b), q($c);");
    let bomb = append_raw(&t, &code);
    let v = a.verifier().verify(&bomb).unwrap();
    let e = v.authorize("model", "small", NOW).unwrap_err();
    assert!(e.to_string().contains("could not be evaluated"), "{e}");
}

#[test]
fn grants_are_validated() {
    let a = TokenAuthority::generate();
    let mut g = grant();
    g.rights.clear();
    assert!(a.issue(&g, NOW).is_err());
    let mut g = grant();
    g.rights = vec![Right::new("planet", "mars")];
    assert!(a.issue(&g, NOW).is_err());
    let mut g = grant();
    g.agent = "bad\"agent".into();
    assert!(a.issue(&g, NOW).is_err());
    let mut g = grant();
    g.expires_at = NOW;
    assert!(a.issue(&g, NOW).is_err());
}

#[test]
fn the_key_round_trips_through_hex() {
    let (a, t) = minted();
    let again = TokenAuthority::from_private_key_hex(&a.private_key_hex()).unwrap();
    again.verifier().verify(&t).unwrap();
    let v = TaskTokenVerifier::from_public_key_hex(&a.public_key_hex()).unwrap();
    v.verify(&t).unwrap();
    assert!(TokenAuthority::from_private_key_hex("zz").is_err());
    assert!(!format!("{a:?}").contains(&a.private_key_hex()));
}

#[test]
fn a_wildcard_right_allows_every_resource_of_its_kind() {
    let a = TokenAuthority::generate();
    let mut g = grant();
    g.rights = vec![Right::new("model", "*")];
    let t = a.issue(&g, NOW).unwrap();
    let v = a.verifier().verify(&t).unwrap();
    v.authorize("model", "anything", NOW).unwrap();
    assert!(v.authorize("tool", "anything", NOW).is_err());
}

#[test]
fn the_cache_answers_repeats_and_keeps_answers_to_their_second() {
    let (a, t) = minted();
    let cache = TaskTokenCache::new(2);
    let v = a.verifier();
    let first = cache.get_or_verify(&t, &v).unwrap();
    let again = cache.get_or_verify(&format!(" {t} "), &v).unwrap();
    assert!(std::sync::Arc::ptr_eq(&first, &again));
    first.authorize("model", "small", NOW + 900).unwrap();
    // The next second is a new question: the expiry is seen even though the last answer allowed.
    assert!(matches!(
        first.authorize("model", "small", NOW + 901),
        Err(TaskTokenError::Expired(_))
    ));
    assert!(first.authorize("model", "secret-model", NOW).is_err());
    // Failures are not cached as tokens; a forged token is refused every time.
    let forged = TokenAuthority::generate().issue(&grant(), NOW).unwrap();
    assert!(cache.get_or_verify(&forged, &v).is_err());
    assert!(cache.get_or_verify(&forged, &v).is_err());
    assert_eq!(cache.len(), 1);
}

#[test]
fn a_ceiling_allows_its_entries_and_wildcards_only() {
    let c = Ceiling::parse(&["model:small".into(), "tool:*".into()]).unwrap();
    assert!(c.allows("model", "small"));
    assert!(!c.allows("model", "large"));
    assert!(c.allows("tool", "anything"));
    assert!(!c.allows("document", "small"));
    assert!(c.covers(&Right::new("tool", "*")));
    assert!(!c.covers(&Right::new("model", "*")));
    assert_eq!(c.entries(), vec!["model:small", "tool:*"]);
    for bad in ["small", "planet:mars", "model:", "model:bad name"] {
        assert!(Ceiling::parse(&[bad.to_string()]).is_err(), "{bad}");
    }
}
