//! Validators for personal-data candidates: checksums and registries that a regex alone cannot
//! express. Each is a pure function over the matched text, so each is tested on its own and the
//! detector stays a list of "find candidates, keep the valid ones".

use sha2::{Digest, Sha256};
use sha3::Keccak256;

/// Luhn checksum over the ASCII digits of `digits`.
pub fn luhn_valid(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    let mut double = false;
    for &d in digits.iter().rev() {
        if !d.is_ascii_digit() {
            return false;
        }
        let mut v = u32::from(d - b'0');
        if double {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
        double = !double;
    }
    !digits.is_empty() && sum.is_multiple_of(10)
}

/// Whether the digits fall in a known issuer's range with that issuer's length.
pub(crate) fn issuer_known(d: &[u8]) -> bool {
    let prefix = |n: usize| -> u32 {
        d.iter()
            .take(n)
            .fold(0u32, |acc, &c| acc * 10 + u32::from(c.wrapping_sub(b'0')))
    };
    let len = d.len();
    let p1 = prefix(1);
    let p2 = prefix(2);
    let p3 = prefix(3);
    let p4 = prefix(4);
    let p6 = prefix(6);
    (p1 == 4 && matches!(len, 13 | 16 | 19)) // Visa
        || ((51..=55).contains(&p2) || (2221..=2720).contains(&p4)) && len == 16 // Mastercard
        || (p2 == 34 || p2 == 37) && len == 15 // Amex
        || (p4 == 6011 || p2 == 65 || (644..=649).contains(&p3) || (622126..=622925).contains(&p6))
            && (16..=19).contains(&len) // Discover
        // JCB is 3528-3589; card generators and some issuers' test ranges use the whole 35
        // block, and Luhn with the length keeps a random number out.
        || p2 == 35 && (16..=19).contains(&len) // JCB
        || (p4 == 2131 || p4 == 1800) && len == 15 // JCB (15-digit)
        || ((300..=305).contains(&p3) || p2 == 36 || p2 == 38 || p2 == 39) && (14..=19).contains(&len) // Diners
        || p2 == 62 && (16..=19).contains(&len) // UnionPay
        || (p2 == 50 || (56..=58).contains(&p2) || p4 == 6304 || p4 == 6390 || (6759..=6763).contains(&p4))
            && (12..=19).contains(&len) // Maestro (50, 56-58 and its 6x ranges)
        || (2200..=2204).contains(&p4) && (16..=19).contains(&len) // Mir
        || (p2 == 60 || p2 == 81 || p2 == 82 || p3 == 508) && len == 16 // RuPay
        || p4 == 9792 && len == 16 // Troy
        || (6370..=6399).contains(&p4) && len == 16 // InstaPayment, InterPayment
}

/// IBAN length per country (ISO 13616 registry).
const IBAN_LENGTHS: &[(&str, usize)] = &[
    ("AD", 24),
    ("AE", 23),
    ("AL", 28),
    ("AT", 20),
    ("AZ", 28),
    ("BA", 20),
    ("BE", 16),
    ("BG", 22),
    ("BH", 22),
    ("BI", 27),
    ("BR", 29),
    ("BY", 28),
    ("CH", 21),
    ("CR", 22),
    ("CY", 28),
    ("CZ", 24),
    ("DE", 22),
    ("DJ", 27),
    ("DK", 18),
    ("DO", 28),
    ("EE", 20),
    ("EG", 29),
    ("ES", 24),
    ("FI", 18),
    ("FK", 18),
    ("FO", 18),
    ("FR", 27),
    ("GB", 22),
    ("GE", 22),
    ("GI", 23),
    ("GL", 18),
    ("GR", 27),
    ("GT", 28),
    ("HR", 21),
    ("HU", 28),
    ("IE", 22),
    ("IL", 23),
    ("IQ", 23),
    ("IS", 26),
    ("IT", 27),
    ("JO", 30),
    ("KW", 30),
    ("KZ", 20),
    ("LB", 28),
    ("LC", 32),
    ("LI", 21),
    ("LT", 20),
    ("LU", 20),
    ("LV", 21),
    ("LY", 25),
    ("MC", 27),
    ("MD", 24),
    ("ME", 22),
    ("MK", 19),
    ("MN", 20),
    ("MR", 27),
    ("MT", 31),
    ("MU", 30),
    ("NI", 28),
    ("NL", 18),
    ("NO", 15),
    ("OM", 23),
    ("PK", 24),
    ("PL", 28),
    ("PS", 29),
    ("PT", 25),
    ("QA", 29),
    ("RO", 24),
    ("RS", 22),
    ("RU", 33),
    ("SA", 24),
    ("SC", 31),
    ("SD", 18),
    ("SE", 24),
    ("SI", 19),
    ("SK", 24),
    ("SM", 27),
    ("SO", 23),
    ("ST", 25),
    ("SV", 28),
    ("TL", 23),
    ("TN", 24),
    ("TR", 26),
    ("UA", 29),
    ("VA", 22),
    ("VG", 24),
    ("XK", 20),
    ("YE", 30),
];

/// An IBAN (spaces already removed): the country's length and the mod-97 check (ISO 7064).
pub fn iban_valid(iban: &[u8]) -> bool {
    let Some(country) = iban.get(..2).and_then(|c| std::str::from_utf8(c).ok()) else {
        return false;
    };
    let Some(&(_, len)) = IBAN_LENGTHS.iter().find(|(c, _)| *c == country) else {
        return false;
    };
    if iban.len() != len || !iban.iter().all(u8::is_ascii_alphanumeric) {
        return false;
    }
    // Move the first four characters to the end, read letters as 10..35, take mod 97.
    let rotated = iban.iter().skip(4).chain(iban.iter().take(4));
    let mut rem = 0u32;
    for &c in rotated {
        let v = match c {
            b'0'..=b'9' => u32::from(c - b'0'),
            b'A'..=b'Z' => u32::from(c - b'A') + 10,
            _ => return false,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

/// A US Social Security number's parts: area 001–899 except 666, group 01–99, serial
/// 0001–9999, and not one of the numbers published in advertisements.
pub fn ssn_valid(area: u32, group: u32, serial: u32) -> bool {
    let advertised = matches!(
        (area, group, serial),
        (78, 5, 1120) | (219, 9, 9999) | (457, 55, 5462)
    );
    (1..=899).contains(&area) && area != 666 && group != 0 && serial != 0 && !advertised
}

/// A Bitcoin address: base58check with version 0 (P2PKH) or 5 (P2SH), or bech32/bech32m
/// segwit (`bc1…`).
pub fn bitcoin_address_valid(addr: &str) -> bool {
    if let Some(rest) = addr.strip_prefix("bc1") {
        return bech32_segwit_valid("bc", rest);
    }
    let Ok(bytes) = bs58::decode(addr).into_vec() else {
        return false;
    };
    let (Some(payload), Some(check)) = (bytes.get(..21), bytes.get(21..)) else {
        return false;
    };
    bytes.len() == 25
        && matches!(payload.first(), Some(0 | 5))
        && Sha256::digest(Sha256::digest(payload)).get(..4) == Some(check)
}

/// BIP-173/BIP-350 checksum over the data part after `hrp` + `1`.
fn bech32_segwit_valid(hrp: &str, data: &str) -> bool {
    const CHARSET: &[u8] = b"qpzry9x8gf2tvdw0s3jn54khce6mua7l";
    const GEN: [u32; 5] = [
        0x3b6a_57b2,
        0x2650_8e6d,
        0x1ea1_19fa,
        0x3d42_33dd,
        0x2a14_62b3,
    ];
    let mut values = Vec::with_capacity(hrp.len() * 2 + 1 + data.len());
    values.extend(hrp.bytes().map(|b| u32::from(b >> 5)));
    values.push(0);
    values.extend(hrp.bytes().map(|b| u32::from(b & 31)));
    for c in data.bytes() {
        let Some(v) = CHARSET.iter().position(|&x| x == c) else {
            return false;
        };
        values.push(v as u32);
    }
    let mut chk: u32 = 1;
    for v in &values {
        let top = chk >> 25;
        chk = ((chk & 0x01ff_ffff) << 5) ^ v;
        for (i, g) in GEN.iter().enumerate() {
            if (top >> i) & 1 == 1 {
                chk ^= g;
            }
        }
    }
    let witness_version = data
        .bytes()
        .next()
        .and_then(|c| CHARSET.iter().position(|&x| x == c));
    match witness_version {
        Some(0) => chk == 1,                // bech32
        Some(1..=16) => chk == 0x2bc8_30a3, // bech32m
        _ => false,
    }
}

/// An Ethereum address (`0x` + 40 hex). Mixed case must carry the EIP-55 checksum; all-lower
/// or all-upper has none to check and is accepted.
pub fn ethereum_address_valid(addr: &str) -> bool {
    let Some(hex) = addr.strip_prefix("0x") else {
        return false;
    };
    if hex.len() != 40 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return false;
    }
    let has_upper = hex.bytes().any(|b| b.is_ascii_uppercase());
    let has_lower = hex.bytes().any(|b| b.is_ascii_lowercase());
    if !(has_upper && has_lower) {
        return true;
    }
    let hash = Keccak256::digest(hex.to_ascii_lowercase().as_bytes());
    hex.bytes().enumerate().all(|(i, c)| {
        if !c.is_ascii_alphabetic() {
            return true;
        }
        let nibble = hash
            .get(i / 2)
            .map(|b| if i % 2 == 0 { b >> 4 } else { b & 0x0f })
            .unwrap_or(0);
        (nibble >= 8) == c.is_ascii_uppercase()
    })
}

/// Whether `year-month-day` is a calendar date in 1900–2100.
pub fn date_valid(year: u32, month: u32, day: u32) -> bool {
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => {
            29
        }
        2 => 28,
        _ => return false,
    };
    (1900..=2100).contains(&year) && (1..=days).contains(&day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ibans_check_length_and_mod_97() {
        assert!(iban_valid(b"GB82WEST12345698765432"));
        assert!(iban_valid(b"DE89370400440532013000"));
        assert!(iban_valid(b"NO9386011117947"));
        assert!(!iban_valid(b"GB82WEST12345698765433"), "checksum");
        assert!(!iban_valid(b"GB82WEST1234569876543"), "length");
        assert!(!iban_valid(b"ZZ82WEST12345698765432"), "country");
        assert!(!iban_valid(b"G"));
    }

    #[test]
    fn ssns_reject_impossible_areas_groups_and_serials() {
        assert!(ssn_valid(123, 45, 6789));
        assert!(!ssn_valid(0, 45, 6789));
        assert!(!ssn_valid(666, 45, 6789));
        assert!(!ssn_valid(900, 45, 6789));
        assert!(!ssn_valid(123, 0, 6789));
        assert!(!ssn_valid(123, 45, 0));
        assert!(!ssn_valid(78, 5, 1120), "the Woolworth wallet card");
    }

    #[test]
    fn bitcoin_addresses_carry_their_checksums() {
        // The genesis block's address, a P2SH example from BIP-13's era and BIP-173/350 vectors.
        assert!(bitcoin_address_valid("1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa"));
        assert!(bitcoin_address_valid("3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy"));
        assert!(bitcoin_address_valid(
            "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"
        ));
        assert!(bitcoin_address_valid(
            "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0"
        ));
        assert!(!bitcoin_address_valid("1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNb"));
        assert!(!bitcoin_address_valid(
            "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t5"
        ));
        assert!(!bitcoin_address_valid("0OIl"));
    }

    #[test]
    fn ethereum_mixed_case_needs_eip55() {
        // EIP-55's own examples.
        assert!(ethereum_address_valid(
            "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
        ));
        assert!(ethereum_address_valid(
            "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359"
        ));
        assert!(!ethereum_address_valid(
            "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD"
        ));
        assert!(ethereum_address_valid(
            "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed"
        ));
        assert!(!ethereum_address_valid(
            "0x5aaeb6053f3e94c9b9a09f33669435e7ef1bea"
        ));
    }

    #[test]
    fn dates_follow_the_calendar() {
        assert!(date_valid(2000, 2, 29));
        assert!(!date_valid(1900, 2, 29));
        assert!(!date_valid(2023, 4, 31));
        assert!(!date_valid(2023, 13, 1));
        assert!(!date_valid(1850, 1, 1));
    }

    #[test]
    fn luhn_and_issuers() {
        assert!(luhn_valid(b"4111111111111111"));
        assert!(!luhn_valid(b"4111111111111112"));
        assert!(!luhn_valid(b""));
        assert!(!luhn_valid(b"12a4"));
        assert!(issuer_known(b"4111111111111111"));
        assert!(!issuer_known(b"1234567812345670"));
    }
}
