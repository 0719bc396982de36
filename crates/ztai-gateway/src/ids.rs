//! Identifiers the gateway mints for what it records: 128 random bits, hex, so they can be
//! neither guessed nor collide across replicas.

use rand::RngCore;

/// A fresh 128-bit request id, hex.
pub fn new_request_id() -> String {
    let mut b = [0u8; 16];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}
