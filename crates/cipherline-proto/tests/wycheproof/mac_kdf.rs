//! HKDF-SHA-256 (`hkdf_test_schema_v1.json`) and HMAC-SHA-256
//! (`mac_test_schema_v1.json`).
//!
//! The core's `kdf::expand_label_into` adds protocol labels, so expansion is
//! called on aws-lc-rs directly (the same provider and `Prk` type the core
//! uses); extraction goes through the core's label-free `kdf::extract`. HMAC is
//! computed with aws-lc-rs for every key size, and for the 32-byte-key,
//! full-tag vectors also through the core's `kdf::hmac` / `kdf::hmac_verify`.

use aws_lc_rs::hkdf::KeyType;
use aws_lc_rs::hmac;
use cipherline_proto::crypto::kdf::{self, Secret};
use serde::Deserialize;

use super::{Meta, Outcome, Tally, de_hex, load};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HkdfGroup {
    key_size: usize,
    tests: Vec<HkdfTest>,
}

#[derive(Deserialize)]
struct HkdfTest {
    #[serde(flatten)]
    meta: Meta,
    #[serde(deserialize_with = "de_hex")]
    ikm: Vec<u8>,
    #[serde(deserialize_with = "de_hex")]
    salt: Vec<u8>,
    #[serde(deserialize_with = "de_hex")]
    info: Vec<u8>,
    size: usize,
    #[serde(deserialize_with = "de_hex")]
    okm: Vec<u8>,
}

/// An arbitrary HKDF-Expand output length.
struct Len(usize);

impl KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

fn hkdf_outcome(t: &HkdfTest) -> Outcome {
    let prk = kdf::extract(&t.salt, &t.ikm);
    let mut out = vec![0u8; t.size];
    let info = [t.info.as_slice()];
    match prk.expand(&info, Len(t.size)).and_then(|okm| okm.fill(&mut out)) {
        Err(e) => Outcome::Rejected(format!("expand: {e:?}")),
        Ok(()) if out == t.okm => Outcome::Accepted,
        Ok(()) => Outcome::WrongOutput(format!("okm {}", hex::encode(&out))),
    }
}

#[test]
fn hkdf_sha256() {
    let f = load::<HkdfGroup>("hkdf_sha256_test.json");
    let mut tally = Tally::new("hkdf_sha256", &f, "HKDF-SHA-256", "hkdf_test_schema_v1.json");
    for g in &f.test_groups {
        for t in &g.tests {
            if t.ikm.len() * 8 != g.key_size {
                tally.fail(&t.meta, "ikm length disagrees with the group's keySize");
            }
            tally.check(&t.meta, hkdf_outcome(t));
        }
    }
    tally.finish();
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MacGroup {
    key_size: usize,
    tag_size: usize,
    tests: Vec<MacTest>,
}

#[derive(Deserialize)]
struct MacTest {
    #[serde(flatten)]
    meta: Meta,
    #[serde(deserialize_with = "de_hex")]
    key: Vec<u8>,
    #[serde(deserialize_with = "de_hex")]
    msg: Vec<u8>,
    #[serde(deserialize_with = "de_hex")]
    tag: Vec<u8>,
}

/// Accepted if the vector's tag is the first `tag_bits` of HMAC-SHA-256.
fn hmac_outcome(t: &MacTest, tag_bits: usize) -> Outcome {
    let key = hmac::Key::new(hmac::HMAC_SHA256, &t.key);
    let full = hmac::sign(&key, &t.msg);
    let matches = full.as_ref().get(..tag_bits / 8) == Some(t.tag.as_slice());
    if tag_bits == 256 {
        // Full tags: aws-lc-rs's constant-time verify must agree.
        if hmac::verify(&key, &t.msg, &t.tag).is_ok() != matches {
            return Outcome::WrongOutput("hmac::verify disagrees with hmac::sign".to_owned());
        }
        // 32-byte keys and full tags are what the core's Finished MAC uses.
        if let Ok(key32) = <[u8; 32]>::try_from(t.key.as_slice()) {
            let secret = Secret::new(key32);
            if kdf::hmac_verify(&secret, &t.msg, &t.tag) != matches || kdf::hmac(&secret, &t.msg)[..] != *full.as_ref()
            {
                return Outcome::WrongOutput("kdf::hmac / kdf::hmac_verify disagree with aws-lc-rs".to_owned());
            }
        }
    }
    if matches {
        Outcome::Accepted
    } else {
        Outcome::Rejected(format!("tag mismatch (computed {})", hex::encode(full.as_ref())))
    }
}

#[test]
fn hmac_sha256() {
    let f = load::<MacGroup>("hmac_sha256_test.json");
    let mut tally = Tally::new("hmac_sha256", &f, "HMACSHA256", "mac_test_schema_v1.json");
    for g in &f.test_groups {
        for t in &g.tests {
            if t.key.len() * 8 != g.key_size || !(g.tag_size == 128 || g.tag_size == 256) {
                tally.fail(&t.meta, "key length or tagSize unexpected");
            }
            tally.check(&t.meta, hmac_outcome(t, g.tag_size));
        }
    }
    tally.finish();
}
