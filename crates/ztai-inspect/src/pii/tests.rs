use super::*;

fn found(text: &str) -> Vec<(String, &str)> {
    let d = PiiDetector::new().unwrap();
    let mut out = vec![];
    d.detect(text, Channel::Output, &mut out);
    out.iter()
        .map(|f| (f.kind.clone(), &text[f.span.start..f.span.end]))
        .collect()
}

fn kinds_found(text: &str, kind: &str) -> Vec<String> {
    found(text)
        .into_iter()
        .filter(|(k, _)| k == kind)
        .map(|(_, v)| v.to_string())
        .collect()
}

#[test]
fn emails_are_found_with_exact_spans() {
    assert_eq!(
        found("write to jane.doe+ai@mail.example.co.uk, thanks"),
        vec![("email".to_string(), "jane.doe+ai@mail.example.co.uk")]
    );
    assert!(found("not an email: a@b, foo@bar, @handle").is_empty());
}

#[test]
fn valid_cards_in_any_common_layout_are_found() {
    for card in [
        "4111111111111111",
        "4111 1111 1111 1111",
        "5500-0000-0000-0004",
        "378282246310005",
        "6011000990139424",
    ] {
        let text = format!("card: {card}.");
        assert_eq!(
            kinds_found(&text, "credit_card"),
            vec![card.to_string()],
            "{card}"
        );
    }
}

#[test]
fn only_ascii_digits_make_a_card() {
    // U+11DA0 is a Unicode decimal digit; a card must not swallow it.
    assert_eq!(
        kinds_found("4111 1111 1111 1111 \u{11da0}x", "credit_card"),
        vec!["4111 1111 1111 1111"]
    );
}

#[test]
fn issuer_ranges_beyond_the_big_four_are_cards() {
    for card in [
        "3521777777777779",    // JCB
        "3589777777777777775", // JCB19
        "587477777771",        // Maestro12
        "675977777777777773",  // Maestro
        "2201777777777778",    // Mir
        "8112777777777773",    // RuPay
        "9792777777777778",    // Troy
        "6380777777777772",    // InstaPayment
    ] {
        let text = format!("paid with {card} yesterday");
        assert_eq!(
            kinds_found(&text, "credit_card"),
            vec![card.to_string()],
            "{card}"
        );
    }
    // One digit off fails Luhn.
    assert!(kinds_found("paid with 3521777777777778 yesterday", "credit_card").is_empty());
}

#[test]
fn luhn_failures_and_unknown_issuers_are_not_cards() {
    assert!(
        kinds_found("4111111111111112", "credit_card").is_empty(),
        "bad checksum"
    );
    assert!(kinds_found("order 1234567812345670", "credit_card").is_empty());
    assert!(kinds_found("phone 0000000000000", "credit_card").is_empty());
}

#[test]
fn ibans_are_validated_and_cut_to_their_country_length() {
    assert_eq!(
        kinds_found("My IBAN is GB82WEST12345698765432.", "iban"),
        vec!["GB82WEST12345698765432"]
    );
    assert_eq!(
        kinds_found("IBAN DE89 3704 0044 0532 0130 00 thanks", "iban"),
        vec!["DE89 3704 0044 0532 0130 00"]
    );
    assert!(
        kinds_found("IBAN GB82WEST12345698765433", "iban").is_empty(),
        "checksum"
    );
    assert!(
        kinds_found("code XX82WEST12345698765432", "iban").is_empty(),
        "country"
    );
}

#[test]
fn ssns_need_valid_parts_and_context_unless_dashed() {
    assert_eq!(
        kinds_found("Here's my SSN: 494-33-0748", "us_ssn"),
        vec!["494-33-0748"]
    );
    assert_eq!(
        kinds_found("social security number 494330748", "us_ssn"),
        vec!["494330748"]
    );
    assert!(
        kinds_found("order 494330748 shipped", "us_ssn").is_empty(),
        "bare run without context"
    );
    assert!(
        kinds_found("SSN 666-33-0748", "us_ssn").is_empty(),
        "area 666"
    );
    assert!(
        kinds_found("SSN 923-33-0748", "us_ssn").is_empty(),
        "area 9xx"
    );
    assert!(
        kinds_found("SSN 494-00-0748", "us_ssn").is_empty(),
        "group 00"
    );
    assert!(
        kinds_found("SSN 078-05-1120", "us_ssn").is_empty(),
        "advertised"
    );
}

#[test]
fn ip_addresses_are_validated_and_internal_ones_are_low() {
    let d = PiiDetector::new().unwrap();
    let mut out = vec![];
    d.detect(
        "from 133.133.133.133 and 10.0.0.1, v6 2a02:6b8:85a3::8a2e:370:7334 fd12:3456:789a::1 fe80::1ff:fe23:4567:890a 2001:db8:85a3::7334",
        Channel::Input,
        &mut out,
    );
    out.sort_by_key(|f| f.span.start);
    let ips: Vec<(&str, Severity)> = out
        .iter()
        .filter(|f| f.kind == "ip_address")
        .map(|f| {
            (
                &"from 133.133.133.133 and 10.0.0.1, v6 2a02:6b8:85a3::8a2e:370:7334 fd12:3456:789a::1 fe80::1ff:fe23:4567:890a 2001:db8:85a3::7334"
                    [f.span.start..f.span.end],
                f.severity,
            )
        })
        .collect();
    assert_eq!(
        ips,
        vec![
            ("133.133.133.133", Severity::Medium),
            ("10.0.0.1", Severity::Low),
            ("2a02:6b8:85a3::8a2e:370:7334", Severity::Medium),
            ("fd12:3456:789a::1", Severity::Low),
            ("fe80::1ff:fe23:4567:890a", Severity::Low),
            ("2001:db8:85a3::7334", Severity::Low),
        ]
    );
    for text in [
        "256.256.256.256",
        "1.2.3.04",
        "1.2.3.4.5.6",
        "version 1.2.3",
        "at 12:30:45",
    ] {
        assert!(kinds_found(text, "ip_address").is_empty(), "{text}");
    }
}

#[test]
fn mac_addresses_and_wallets_are_found() {
    assert_eq!(
        kinds_found("nic 00:1A:2b:3C:4d:5E up", "mac_address"),
        vec!["00:1A:2b:3C:4d:5E"]
    );
    assert_eq!(
        kinds_found("nic 001a.2b3c.4d5e up", "mac_address"),
        vec!["001a.2b3c.4d5e"]
    );
    assert_eq!(
        kinds_found(
            "send to 1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa now",
            "crypto_wallet"
        ),
        vec!["1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa"]
    );
    assert_eq!(
        kinds_found(
            "eth 0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
            "crypto_wallet"
        ),
        vec!["0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"]
    );
    assert!(
        kinds_found(
            "eth 0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD",
            "crypto_wallet"
        )
        .is_empty()
    );
    assert!(kinds_found("btc 1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNb", "crypto_wallet").is_empty());
}

#[test]
fn ipv6_in_every_written_form_is_found_with_its_own_severity() {
    let d = PiiDetector::new().unwrap();
    for (text, want, severity) in [
        (
            "peer 2a02:6b8::1 connected",
            "2a02:6b8::1",
            Severity::Medium,
        ),
        ("loopback ::1 only", "::1", Severity::Low),
        ("bound to fe80::1%eth0 now", "fe80::1%eth0", Severity::Low),
        (
            "link fe80::a00:27ff:fe4e:66a1%en0.",
            "fe80::a00:27ff:fe4e:66a1%en0",
            Severity::Low,
        ),
        (
            "mapped ::ffff:203.0.113.9 seen",
            "::ffff:203.0.113.9",
            Severity::Low,
        ),
        (
            "mapped ::ffff:81.2.69.160 seen",
            "::ffff:81.2.69.160",
            Severity::Medium,
        ),
        (
            "nat64 64:ff9b::81.2.69.160 seen",
            "64:ff9b::81.2.69.160",
            Severity::Medium,
        ),
        (
            "doc 2001:db8::8a2e:370:7334",
            "2001:db8::8a2e:370:7334",
            Severity::Low,
        ),
        ("doc 3fff:0:1::5", "3fff:0:1::5", Severity::Low),
        ("group ff02::fb mdns", "ff02::fb", Severity::Low),
        (
            "full 2606:4700:4700:0000:0000:0000:0000:1111 ok",
            "2606:4700:4700:0000:0000:0000:0000:1111",
            Severity::Medium,
        ),
        ("upper 2A02:6B8::1 ok", "2A02:6B8::1", Severity::Medium),
        (
            "url http://[2a02:6b8::1]:8080/x",
            "2a02:6b8::1",
            Severity::Medium,
        ),
    ] {
        let mut out = vec![];
        d.detect(text, Channel::Input, &mut out);
        let ips: Vec<(&str, Severity)> = out
            .iter()
            .filter(|f| f.kind == "ip_address")
            .map(|f| (&text[f.span.start..f.span.end], f.severity))
            .collect();
        assert_eq!(ips, vec![(want, severity)], "{text}");
    }
    // Paths in code, times, MAC-like and hex words are not addresses.
    for text in [
        "use std::io::Write;",
        "call Foo::bar() and ab::cd",
        "at 12:30:45 today",
        "the :: operator",
        "deadbeef::cafe",
        "ratio 1:2:3",
    ] {
        assert!(
            kinds_found(text, "ip_address").is_empty(),
            "{text}: {:?}",
            found(text)
        );
    }
}

#[test]
fn phone_numbers_in_international_formats() {
    for phone in [
        "+41 (0)96 471 07 95",
        "+1-984-182-0190",
        "+447700 208 815",
        "(08) 8747 6301",
        "541-714-1388",
        "03.93.92.16.85",
        "0496 46 46 70",
        "+1 415-555-0132 ext. 204",
        "+44 20 7946 0958 x12",
        "+49 (0)30 901820",
        "0044 20 7946 0958",
        "+33 1 42 68 53 00",
        "+81 3-1234-5678",
        "+1 (415) 555-0132",
        "345-899-3560x4587",
        "0378 3549890",
    ] {
        let text = format!("They're not answering at {phone}.");
        assert_eq!(
            kinds_found(&text, "phone_number"),
            vec![phone.to_string()],
            "{phone}"
        );
    }
    // A bare run needs the word.
    assert_eq!(
        kinds_found("Fax: 9498777106", "phone_number"),
        vec!["9498777106"]
    );
    assert!(kinds_found("invoice 9498777106", "phone_number").is_empty());
    // A postcode before the number is not part of it.
    assert_eq!(
        kinds_found(
            "Ribeirão  Portugal 30971 21 253 109 8211-Office",
            "phone_number"
        ),
        vec!["21 253 109 8211"]
    );
}

#[test]
fn numbers_that_are_not_phone_numbers() {
    for text in [
        "Date: 2012-10-01 00:46:43",
        "born 10.23.1951 in Ohio",
        "between 1977 2002 and later",
        "pi is 3.14159265",
        "population 10 000 000 people",
        "ZIP 12345-6789",
        "server 192.168.100.200",
        "version 10.2.3.4567",
    ] {
        assert!(
            kinds_found(text, "phone_number").is_empty(),
            "{text}: {:?}",
            found(text)
        );
    }
}

#[test]
fn dates_of_birth_need_the_birth_context() {
    assert_eq!(
        kinds_found("She was born on 10/23/1951.", "date_of_birth"),
        vec!["10/23/1951"]
    );
    assert_eq!(
        kinds_found("DOB: March 3rd, 1985", "date_of_birth"),
        vec!["March 3rd, 1985"]
    );
    assert!(kinds_found("The meeting is on 10/23/2025.", "date_of_birth").is_empty());
    assert_eq!(
        kinds_found("The meeting is on 10/23/2025.", "date"),
        vec!["10/23/2025"]
    );
    assert_eq!(
        kinds_found("Date: 2012-10-01 00:46:43", "date"),
        vec!["2012-10-01 00:46:43"]
    );
    assert!(kinds_found("upgrade to version 4.5.10 today", "date").is_empty());
    assert!(
        kinds_found("born on 13/45/1951", "date_of_birth").is_empty(),
        "not a date"
    );
}

#[test]
fn id_numbers_follow_their_label() {
    assert_eq!(
        kinds_found(
            "my driver's license number is 2270-66-1551",
            "us_driver_license"
        ),
        vec!["2270-66-1551"]
    );
    assert_eq!(
        kinds_found("Passport No: X12345678", "passport_number"),
        vec!["X12345678"]
    );
    assert!(kinds_found("my passport is in the drawer", "passport_number").is_empty());
}

#[test]
fn personal_websites_need_the_possessive() {
    assert_eq!(
        kinds_found(
            "My website is http://www.ScrapbookInsider.com.pt/.",
            "personal_url"
        ),
        vec!["http://www.ScrapbookInsider.com.pt/"]
    );
    assert!(kinds_found("See https://docs.rs/regex for details", "personal_url").is_empty());
}

#[test]
fn names_by_title_introducer_and_gazetteer() {
    assert_eq!(
        kinds_found("Please ask Dr. Cettina Fanucci.", "person"),
        vec!["Cettina Fanucci"]
    );
    assert_eq!(
        kinds_found("my name is lena andersson", "person"),
        vec!["lena andersson"]
    );
    assert_eq!(
        kinds_found("we need to add Thelma Mitchell to it", "person"),
        vec!["Thelma Mitchell"]
    );
    assert!(kinds_found("The Quick Brown fox", "person").is_empty());
    assert!(kinds_found("my name is The Best", "person").is_empty());
}

#[test]
fn street_addresses_in_common_styles() {
    for addr in [
        "12 Timms Drive Suite 215",
        "Parijsstraat 8",
        "Rua do Arenque 1634",
        "P.O. Box 287",
        "31 Rue Al Imam Al Bakri",
    ] {
        let text = format!("Send it to {addr}, please.");
        assert_eq!(
            kinds_found(&text, "street_address"),
            vec![addr.to_string()],
            "{addr}"
        );
    }
    assert!(kinds_found("I walked 12 blocks down the road", "street_address").is_empty());
}

#[test]
fn detection_never_depends_on_the_gates() {
    let d = PiiDetector::new().unwrap();
    for text in [
        "Here's my SSN: 494-33-0748, card 4111 1111 1111 1111, mail a@b.io",
        "She was born on 10/23/1951. Phone: +41 (0)96 471 07 95",
        "no digits and no capitals here",
    ] {
        let (mut a, mut b) = (vec![], vec![]);
        d.detect(text, Channel::Input, &mut a);
        d.detect_ungated(text, Channel::Input, &mut b);
        assert_eq!(a, b, "{text}");
    }
}
