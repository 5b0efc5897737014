//! AES-GCM and ChaCha20-Poly1305 (`aead_test_schema_v1.json`) through the
//! core's `AeadKey`.

use cipherline_proto::crypto::aead::{AeadKey, NONCE_LEN, TAG_LEN};
use cipherline_proto::suite::Aead;
use serde::Deserialize;

use super::{Meta, Outcome, Tally, de_hex, load};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AeadGroup {
    key_size: usize,
    iv_size: usize,
    tag_size: usize,
    tests: Vec<AeadTest>,
}

#[derive(Deserialize)]
struct AeadTest {
    #[serde(flatten)]
    meta: Meta,
    #[serde(deserialize_with = "de_hex")]
    key: Vec<u8>,
    #[serde(deserialize_with = "de_hex")]
    iv: Vec<u8>,
    #[serde(deserialize_with = "de_hex")]
    aad: Vec<u8>,
    #[serde(deserialize_with = "de_hex")]
    msg: Vec<u8>,
    #[serde(deserialize_with = "de_hex")]
    ct: Vec<u8>,
    #[serde(deserialize_with = "de_hex")]
    tag: Vec<u8>,
}

/// Opens `ct || tag` and seals `msg`. Accepted only if opening succeeds, the
/// plaintext is `msg`, and sealing `msg` gives exactly `ct || tag`.
fn seal_and_open(key: &AeadKey, nonce: [u8; NONCE_LEN], t: &AeadTest) -> Outcome {
    let mut ct_tag = [t.ct.as_slice(), t.tag.as_slice()].concat();
    let opened = match key.open(nonce, &t.aad, &mut ct_tag) {
        Ok(pt) => pt.to_vec(),
        Err(e) => return Outcome::Rejected(format!("open: {e:?}")),
    };
    let mut sealed = t.msg.clone();
    if let Err(e) = key.seal(nonce, &t.aad, &mut sealed) {
        return Outcome::Rejected(format!("seal: {e:?}"));
    }
    if opened != t.msg {
        return Outcome::WrongOutput(format!("open gave {}", hex::encode(&opened)));
    }
    let expected = [t.ct.as_slice(), t.tag.as_slice()].concat();
    if sealed != expected {
        return Outcome::WrongOutput(format!("seal gave {}", hex::encode(&sealed)));
    }
    Outcome::Accepted
}

fn run(file: &str, name: &'static str, algorithm: &str, alg: Aead) {
    let f = load::<AeadGroup>(file);
    let mut tally = Tally::new(name, &f, algorithm, "aead_test_schema_v1.json");
    for g in &f.test_groups {
        for t in &g.tests {
            if t.key.len() * 8 != g.key_size || t.iv.len() * 8 != g.iv_size {
                tally.fail(&t.meta, "key or IV length disagrees with the group's keySize/ivSize");
            }
            // Both of the core's AEADs take only 256-bit keys; AES-128/192-GCM
            // keys must be refused by the key constructor.
            if g.key_size != 256 {
                if AeadKey::new(alg, &t.key).is_ok() {
                    tally.fail(&t.meta, format!("AeadKey::new accepted a {}-bit key", g.key_size));
                }
                tally.skip("key size not 256 bits (AeadKey::new refuses it)");
                continue;
            }
            // The nonce is a `[u8; 12]` by type: a non-96-bit IV (including the
            // invalid 0-bit ones) cannot even be passed to the core's API.
            let Ok(nonce) = <[u8; NONCE_LEN]>::try_from(t.iv.as_slice()) else {
                tally.skip("IV not 96 bits (not expressible: nonce is [u8; 12])");
                continue;
            };
            let key = match AeadKey::new(alg, &t.key) {
                Ok(key) => key,
                Err(e) => {
                    tally.check(&t.meta, Outcome::Rejected(format!("AeadKey::new: {e:?}")));
                    continue;
                }
            };
            // The tag is always 128 bits in the core's API (no tag-length
            // parameter); a shorter tag appended to the ciphertext must fail.
            if g.tag_size != TAG_LEN * 8 {
                let mut ct_tag = [t.ct.as_slice(), t.tag.as_slice()].concat();
                if key.open(nonce, &t.aad, &mut ct_tag).is_ok() {
                    tally.fail(&t.meta, format!("open accepted a {}-bit tag", g.tag_size));
                }
                tally.skip("tag not 128 bits (open refuses it)");
                continue;
            }
            tally.check(&t.meta, seal_and_open(&key, nonce, t));
        }
    }
    tally.finish();
}

#[test]
fn aes_gcm() {
    run("aes_gcm_test.json", "aes_gcm", "AES-GCM", Aead::Aes256Gcm);
}

#[test]
fn chacha20_poly1305() {
    run("chacha20_poly1305_test.json", "chacha20_poly1305", "CHACHA20-POLY1305", Aead::ChaCha20Poly1305);
}
