//! Token secrets and what the catalog keeps to check them.
//!
//! A token is `silt_` and 64 hex digits (256 random bits). The catalog
//! keeps its SHA-256 (a random secret that long needs no salt or
//! stretching) and, for SASL/SCRAM on the Kafka listener, SCRAM's stored
//! and server keys for SHA-256 and SHA-512 (RFC 5802), salted and
//! stretched as SCRAM asks.

use ring::{digest, hmac, pbkdf2};
use silt_metadata::catalog::{ScramCredential, TokenRecord};

/// SCRAM's iteration count (Kafka's minimum, and its clients' default expectation).
pub const SCRAM_ITERATIONS: u32 = 4096;

/// The SCRAM hash functions, as the catalog numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    Sha256,
    Sha512,
}

impl Mechanism {
    pub const ALL: [Mechanism; 2] = [Mechanism::Sha256, Mechanism::Sha512];

    pub fn code(self) -> u8 {
        match self {
            Mechanism::Sha256 => 0,
            Mechanism::Sha512 => 1,
        }
    }

    /// The SASL mechanism name.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Sha256 => "SCRAM-SHA-256",
            Mechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    pub fn hmac(self) -> hmac::Algorithm {
        match self {
            Mechanism::Sha256 => hmac::HMAC_SHA256,
            Mechanism::Sha512 => hmac::HMAC_SHA512,
        }
    }

    pub fn digest(self) -> &'static digest::Algorithm {
        match self {
            Mechanism::Sha256 => &digest::SHA256,
            Mechanism::Sha512 => &digest::SHA512,
        }
    }

    fn pbkdf2(self) -> pbkdf2::Algorithm {
        match self {
            Mechanism::Sha256 => pbkdf2::PBKDF2_HMAC_SHA256,
            Mechanism::Sha512 => pbkdf2::PBKDF2_HMAC_SHA512,
        }
    }

    pub fn output_len(self) -> usize {
        self.digest().output_len()
    }
}

/// A new random token secret.
pub fn new_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    let mut s = String::with_capacity(5 + 64);
    s.push_str("silt_");
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// The SHA-256 of a secret: what the catalog keeps and requests are checked against.
pub fn hash(secret: &str) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, secret.as_bytes());
    d.as_ref().try_into().expect("SHA-256 is 32 bytes")
}

/// SCRAM's salted password: Hi(password, salt, i).
pub fn salted_password(m: Mechanism, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
    let mut out = vec![0u8; m.output_len()];
    let n = std::num::NonZeroU32::new(iterations.max(1)).expect("at least one iteration");
    pbkdf2::derive(m.pbkdf2(), n, salt, password, &mut out);
    out
}

pub fn hmac_of(m: Mechanism, key: &[u8], data: &[u8]) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(m.hmac(), key), data).as_ref().to_vec()
}

pub fn digest_of(m: Mechanism, data: &[u8]) -> Vec<u8> {
    digest::digest(m.digest(), data).as_ref().to_vec()
}

/// SCRAM's stored credential for `password`, with this salt.
pub fn scram_credential(m: Mechanism, password: &[u8], salt: &[u8], iterations: u32) -> ScramCredential {
    let salted = salted_password(m, password, salt, iterations);
    let client_key = hmac_of(m, &salted, b"Client Key");
    ScramCredential {
        mechanism: m.code(),
        salt: salt.to_vec(),
        iterations,
        stored_key: digest_of(m, &client_key),
        server_key: hmac_of(m, &salted, b"Server Key"),
    }
}

/// What the catalog keeps of a new token.
pub fn record(secret: &str, now_ms: i64, expires_ms: i64) -> TokenRecord {
    TokenRecord {
        hash: hash(secret).to_vec(),
        created_ms: now_ms,
        expires_ms,
        scram: Mechanism::ALL
            .iter()
            .map(|m| {
                let salt: [u8; 16] = rand::random();
                scram_credential(*m, secret.as_bytes(), &salt, SCRAM_ITERATIONS)
            })
            .collect(),
    }
}

/// Compares secrets' hashes in time that does not depend on where they differ.
pub fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    #[test]
    fn secrets_are_fresh_and_hashes_match_only_their_secret() {
        let (a, b) = (new_secret(), new_secret());
        assert_ne!(a, b);
        assert!(a.starts_with("silt_") && a.len() == 69, "{a}");
        assert!(same(&hash(&a), &hash(&a)));
        assert!(!same(&hash(&a), &hash(&b)));
        let r = record(&a, 5, 0);
        assert_eq!(r.hash, hash(&a).to_vec());
        assert_eq!(r.scram.len(), 2);
        assert_ne!(r.scram[0].salt, r.scram[1].salt);
    }

    #[test]
    fn scram_keys_match_rfc_7677() {
        // RFC 7677, section 3: user "user", password "pencil".
        let b64 = base64::engine::general_purpose::STANDARD;
        let salt = b64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let c = scram_credential(Mechanism::Sha256, b"pencil", &salt, 4096);
        let auth = "n=user,r=rOprNGfwEbeRWgbNEkqO,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let server_signature = hmac_of(Mechanism::Sha256, &c.server_key, auth.as_bytes());
        assert_eq!(b64.encode(server_signature), "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
    }
}
