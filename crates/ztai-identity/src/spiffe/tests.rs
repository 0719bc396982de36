use super::*;
use proptest::prelude::*;

fn cert_with(uris: &[&str]) -> Vec<u8> {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    for u in uris {
        params
            .subject_alt_names
            .push(rcgen::SanType::URI((*u).try_into().unwrap()));
    }
    let key = rcgen::KeyPair::generate().unwrap();
    params.self_signed(&key).unwrap().der().to_vec()
}

fn mapping() -> SpiffeMapping {
    SpiffeMapping {
        trust_domains: vec!["prod.example".into()],
        rules: vec![
            SpiffeRule {
                id: "spiffe://prod.example/ns/billing/sa/api".into(),
                kind: PrincipalKind::Service,
                principal: Some("billing-api".into()),
                groups: vec!["services".into()],
            },
            SpiffeRule {
                id: "spiffe://prod.example/models/".into(),
                kind: PrincipalKind::Model,
                principal: None,
                groups: vec!["models".into()],
            },
        ],
    }
}

#[test]
fn valid_ids_parse_and_print_back() {
    for id in [
        "spiffe://prod.example",
        "spiffe://prod.example/ns/billing/sa/api",
        "spiffe://a-b_c.d/x.y/Z-9",
    ] {
        assert_eq!(SpiffeId::parse(id).unwrap().to_string(), id);
    }
}

#[test]
fn malformed_ids_are_refused() {
    for id in [
        "",
        "https://prod.example/x",
        "SPIFFE://prod.example/x",
        "spiffe://",
        "spiffe:///x",
        "spiffe://Prod.example/x",
        "spiffe://prod.example:443/x",
        "spiffe://user@prod.example/x",
        "spiffe://prod.example/",
        "spiffe://prod.example//x",
        "spiffe://prod.example/a/../b",
        "spiffe://prod.example/a/./b",
        "spiffe://prod.example/a?b",
        "spiffe://prod.example/a#b",
        "spiffe://prod.example/a%2fb",
    ] {
        assert!(SpiffeId::parse(id).is_err(), "{id:?} was accepted");
    }
    assert!(SpiffeId::parse(&format!("spiffe://td/{}", "a".repeat(3000))).is_err());
}

#[test]
fn a_certificate_maps_to_its_principal_by_exact_id_or_prefix() {
    let m = mapping();
    let p = m
        .principal(&PeerCertificate::from_der(&cert_with(&[
            "spiffe://prod.example/ns/billing/sa/api",
        ])))
        .unwrap();
    assert_eq!(
        (p.kind, p.id.as_str()),
        (PrincipalKind::Service, "billing-api")
    );
    assert_eq!(p.groups, vec!["services"]);
    assert!(p.credential_id.starts_with("x509:"));
    let p = m
        .principal(&PeerCertificate::from_der(&cert_with(&[
            "spiffe://prod.example/models/llama-guard",
        ])))
        .unwrap();
    assert_eq!(
        (p.kind, p.id.as_str()),
        (PrincipalKind::Model, "llama-guard")
    );
}

#[test]
fn another_trust_domain_an_unmapped_id_or_a_bad_san_is_refused() {
    let m = mapping();
    let foreign =
        PeerCertificate::from_der(&cert_with(&["spiffe://dev.example/ns/billing/sa/api"]));
    assert!(matches!(
        m.principal(&foreign),
        Err(SpiffeError::ForeignTrustDomain(_, td)) if td == "dev.example"
    ));
    // The prefix rule does not match its own prefix, nor a sibling path.
    for id in [
        "spiffe://prod.example/models",
        "spiffe://prod.example/ns/billing/sa/api2",
    ] {
        let peer = PeerCertificate::from_der(&cert_with(&[id]));
        assert!(
            matches!(m.principal(&peer), Err(SpiffeError::Unmapped(_))),
            "{id}"
        );
    }
    let none = PeerCertificate::from_der(&cert_with(&[]));
    assert_eq!(m.principal(&none), Err(SpiffeError::UriCount(0)));
    let two = PeerCertificate::from_der(&cert_with(&[
        "spiffe://prod.example/models/a",
        "spiffe://prod.example/models/b",
    ]));
    assert_eq!(m.principal(&two), Err(SpiffeError::UriCount(2)));
    let garbage = PeerCertificate::from_der(b"not a certificate");
    assert!(matches!(
        m.principal(&garbage),
        Err(SpiffeError::Certificate(_))
    ));
}

proptest! {
    #[test]
    fn parsing_never_panics_and_accepted_ids_round_trip(s in "\\PC{0,80}", tail in "[a-z0-9/._-]{0,40}") {
        let _ = SpiffeId::parse(&s);
        let candidate = format!("spiffe://td.example/{tail}");
        if let Ok(id) = SpiffeId::parse(&candidate) {
            prop_assert_eq!(id.to_string(), candidate);
        }
    }

    #[test]
    fn certificate_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = mapping().principal(&PeerCertificate::from_der(&bytes));
    }
}
