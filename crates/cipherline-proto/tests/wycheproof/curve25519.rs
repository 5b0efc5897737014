//! X25519 (`xdh_comp_schema_v1.json`) through `kem::x25519_agree`, and Ed25519
//! verification (`eddsa_verify_schema_v1.json`) through `IdentityPublicKey`.

use aws_lc_rs::agreement::{PrivateKey, X25519};
use cipherline_proto::crypto::kem::x25519_agree;
use cipherline_proto::crypto::sign::{IdentityPublicKey, SignatureAlgorithm};
use serde::Deserialize;

use super::{Meta, Outcome, SignatureTest, Tally, de_hex, load, verify_outcome};

#[derive(Deserialize)]
struct XdhGroup {
    curve: String,
    tests: Vec<XdhTest>,
}

#[derive(Deserialize)]
struct XdhTest {
    #[serde(flatten)]
    meta: Meta,
    #[serde(deserialize_with = "de_hex")]
    public: Vec<u8>,
    #[serde(deserialize_with = "de_hex")]
    private: Vec<u8>,
    #[serde(deserialize_with = "de_hex")]
    shared: Vec<u8>,
}

fn x25519_outcome(t: &XdhTest) -> Outcome {
    let private = match PrivateKey::from_private_key(&X25519, &t.private) {
        Ok(k) => k,
        Err(e) => return Outcome::Rejected(format!("PrivateKey::from_private_key: {e:?}")),
    };
    match x25519_agree(&private, &t.public) {
        Err(e) => Outcome::Rejected(format!("x25519_agree: {e:?}")),
        Ok(ss) if ss.expose()[..] == t.shared[..] => Outcome::Accepted,
        Ok(ss) => Outcome::WrongOutput(format!("shared secret {}", hex::encode(ss.expose()))),
    }
}

#[test]
fn x25519() {
    let f = load::<XdhGroup>("x25519_test.json");
    let mut tally = Tally::new("x25519", &f, "XDH", "xdh_comp_schema_v1.json");
    for g in &f.test_groups {
        assert_eq!(g.curve, "curve25519");
        for t in &g.tests {
            // Our policy: an all-zero shared secret (a low-order peer key) is
            // refused, so these `acceptable` vectors must be rejected.
            let zero_secret = t.shared.iter().all(|&b| b == 0);
            if zero_secret != t.meta.has_flag("ZeroSharedSecret") {
                tally.fail(&t.meta, "flag ZeroSharedSecret disagrees with the expected shared secret");
            }
            tally.check_with_policy(&t.meta, zero_secret, x25519_outcome(t));
        }
    }
    tally.finish();
}

/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410); the raw key follows.
const ED25519_SPKI_PREFIX: [u8; 12] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EddsaGroup {
    public_key: EddsaKey,
    #[serde(deserialize_with = "de_hex")]
    public_key_der: Vec<u8>,
    tests: Vec<SignatureTest>,
}

#[derive(Deserialize)]
struct EddsaKey {
    curve: String,
    #[serde(deserialize_with = "de_hex")]
    pk: Vec<u8>,
}

#[test]
fn ed25519() {
    let f = load::<EddsaGroup>("ed25519_test.json");
    let mut tally = Tally::new("ed25519", &f, "EDDSA", "eddsa_verify_schema_v1.json");
    for g in &f.test_groups {
        assert_eq!(g.public_key.curve, "edwards25519");
        let spki = [&ED25519_SPKI_PREFIX[..], &g.public_key.pk].concat();
        assert_eq!(spki, g.public_key_der, "our SPKI wrapping differs from the group's publicKeyDer");
        let key = IdentityPublicKey::from_spki(SignatureAlgorithm::Ed25519, &spki).map_err(|e| format!("{e:?}"));
        for t in &g.tests {
            tally.check(&t.meta, verify_outcome(&key, t));
        }
    }
    tally.finish();
}
