//! RSAES-OAEP decryption (`rsaes_oaep_decrypt_schema_v1.json`) with the
//! aws-lc-rs calls the core's static KEM makes, and RSASSA-PSS verification
//! (`rsassa_pss_verify_schema_v1.json`) through `IdentityPublicKey`.

use aws_lc_rs::rsa::{OAEP_SHA256_MGF1SHA256, OaepPrivateDecryptingKey, PrivateDecryptingKey};
use cipherline_proto::crypto::sign::{IdentityPublicKey, SignatureAlgorithm};
use serde::Deserialize;

use super::{Meta, Outcome, SignatureTest, Tally, de_hex, load, verify_outcome};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OaepGroup {
    key_size: usize,
    sha: String,
    mgf: String,
    mgf_sha: String,
    #[serde(deserialize_with = "de_hex")]
    private_key_pkcs8: Vec<u8>,
    tests: Vec<OaepTest>,
}

#[derive(Deserialize)]
struct OaepTest {
    #[serde(flatten)]
    meta: Meta,
    #[serde(deserialize_with = "de_hex")]
    msg: Vec<u8>,
    #[serde(deserialize_with = "de_hex")]
    ct: Vec<u8>,
    #[serde(deserialize_with = "de_hex")]
    label: Vec<u8>,
}

fn oaep_decrypt(key: &OaepPrivateDecryptingKey, ct: &[u8], label: Option<&[u8]>) -> Result<Vec<u8>, String> {
    let mut buf = vec![0u8; key.min_output_size()];
    key.decrypt(&OAEP_SHA256_MGF1SHA256, ct, &mut buf, label)
        .map(|pt| pt.to_vec())
        .map_err(|e| format!("decrypt: {e:?}"))
}

fn oaep_outcome(key: &OaepPrivateDecryptingKey, t: &OaepTest) -> Outcome {
    let result = oaep_decrypt(key, &t.ct, Some(&t.label));
    // aws-lc-rs treats `None` as the empty label; check that it really does.
    if t.label.is_empty() && oaep_decrypt(key, &t.ct, None) != result {
        return Outcome::WrongOutput("label None and Some(&[]) disagree".to_owned());
    }
    match result {
        Err(e) => Outcome::Rejected(e),
        Ok(pt) if pt == t.msg => Outcome::Accepted,
        Ok(pt) => Outcome::WrongOutput(format!("plaintext {}", hex::encode(pt))),
    }
}

fn run_oaep(file: &str, name: &'static str, bits: usize) {
    let f = load::<OaepGroup>(file);
    let mut tally = Tally::new(name, &f, "RSAES-OAEP", "rsaes_oaep_decrypt_schema_v1.json");
    for g in &f.test_groups {
        assert_eq!(
            (g.key_size, g.sha.as_str(), g.mgf.as_str(), g.mgf_sha.as_str()),
            (bits, "SHA-256", "MGF1", "SHA-256")
        );
        // The same two calls as `ServerKey::rsa_from_pkcs8`.
        let key = PrivateDecryptingKey::from_pkcs8(&g.private_key_pkcs8).expect("the group's PKCS#8 RSA key loads");
        let key = OaepPrivateDecryptingKey::new(key).expect("the group's RSA key is usable for OAEP");
        assert_eq!(key.key_size_bits(), bits);
        for t in &g.tests {
            tally.check(&t.meta, oaep_outcome(&key, t));
        }
    }
    tally.finish();
}

#[test]
fn rsa_oaep_2048_sha256() {
    run_oaep("rsa_oaep_2048_sha256_mgf1sha256_test.json", "rsa_oaep_2048_sha256_mgf1sha256", 2048);
}

#[test]
fn rsa_oaep_3072_sha256() {
    run_oaep("rsa_oaep_3072_sha256_mgf1sha256_test.json", "rsa_oaep_3072_sha256_mgf1sha256", 3072);
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PssGroup {
    key_size: usize,
    sha: String,
    mgf: String,
    mgf_sha: String,
    s_len: usize,
    #[serde(deserialize_with = "de_hex")]
    public_key_der: Vec<u8>,
    tests: Vec<SignatureTest>,
}

fn run_pss(file: &str, name: &'static str, bits: usize) {
    let f = load::<PssGroup>(file);
    let mut tally = Tally::new(name, &f, "RSASSA-PSS", "rsassa_pss_verify_schema_v1.json");
    for g in &f.test_groups {
        // SignatureAlgorithm::RsaPssSha256 is SHA-256, MGF1-SHA-256, 32-byte salt.
        assert_eq!(
            (g.key_size, g.sha.as_str(), g.mgf.as_str(), g.mgf_sha.as_str(), g.s_len),
            (bits, "SHA-256", "MGF1", "SHA-256", 32)
        );
        // A key the core refuses makes every valid vector fail below (reported,
        // not worked around).
        let key = IdentityPublicKey::from_spki(SignatureAlgorithm::RsaPssSha256, &g.public_key_der)
            .map_err(|e| format!("{e:?}"));
        for t in &g.tests {
            tally.check(&t.meta, verify_outcome(&key, t));
        }
    }
    tally.finish();
}

#[test]
fn rsa_pss_2048_sha256_mgf1_32() {
    run_pss("rsa_pss_2048_sha256_mgf1_32_test.json", "rsa_pss_2048_sha256_mgf1_32", 2048);
}

#[test]
fn rsa_pss_3072_sha256_mgf1_32() {
    run_pss("rsa_pss_3072_sha256_mgf1_32_test.json", "rsa_pss_3072_sha256_mgf1_32", 3072);
}
