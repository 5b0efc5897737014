//! Project Wycheproof vectors for every crypto primitive the core uses.
//!
//! The vector files live in the repository's own `testdata/wycheproof/`
//! (provenance and checksums in `testdata/README.md`), so these tests need
//! nothing outside a fresh clone.
//!
//! Every vector of every file is accounted for, and the count is checked
//! against the file's `numberOfTests`:
//!
//! - `valid` vectors must succeed and give exactly the expected output;
//! - `invalid` vectors must be rejected (an error, or a failed verification);
//! - `acceptable` vectors (X25519 only) may go either way, but if accepted the
//!   output must be the expected one, and a local policy may require rejection
//!   (we refuse an all-zero X25519 shared secret);
//! - a vector may be counted as "skipped-unsupported" only after asserting that
//!   our API refuses its parameters, or when the parameter cannot even be
//!   expressed in our API's types (a non-96-bit nonce when nonces are
//!   `[u8; 12]`); each skip reason is printed with its count.
//!
//! `cargo test -p cipherline-proto --test wycheproof -- --nocapture` prints one
//! line per file: `checked/numberOfTests (valid V, invalid I, acceptable A;
//! skipped-unsupported S [reasons])`, where V, I and A count the vectors that
//! were actually run, and V + I + A + S = numberOfTests.
//!
//! Failures are collected per file and reported together with their `tcId`s.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

#[path = "wycheproof/aead.rs"]
mod aead;
#[path = "wycheproof/curve25519.rs"]
mod curve25519;
#[path = "wycheproof/mac_kdf.rs"]
mod mac_kdf;
#[path = "wycheproof/mlkem.rs"]
mod mlkem;
#[path = "wycheproof/rsa.rs"]
mod rsa;

use std::collections::BTreeMap;

use cipherline_proto::crypto::sign::IdentityPublicKey;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

/// One Wycheproof JSON file; `G` is the schema's test-group type.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TestFile<G> {
    pub algorithm: String,
    pub schema: String,
    pub number_of_tests: usize,
    pub test_groups: Vec<G>,
}

/// Loads `testdata/wycheproof/<name>` from this repository.
pub fn load<G: DeserializeOwned>(name: &str) -> TestFile<G> {
    let path = format!("{}/../../testdata/wycheproof/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A vector's expected result.
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Expected {
    Valid,
    Invalid,
    Acceptable,
}

/// The fields every test vector has (flattened into each schema's test type).
#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct Meta {
    pub tc_id: u32,
    #[serde(default)]
    pub comment: String,
    #[serde(default)]
    pub flags: Vec<String>,
    pub result: Expected,
}

impl Meta {
    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }
}

/// Deserializes a hex string.
pub fn de_hex<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    let s = String::deserialize(d)?;
    hex::decode(s).map_err(serde::de::Error::custom)
}

/// Deserializes an optional hex string (use with `#[serde(default)]`).
pub fn de_hex_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
    de_hex(d).map(Some)
}

/// What happened when a vector was run.
#[derive(Debug)]
pub enum Outcome {
    /// Every operation succeeded and every output matched the vector.
    Accepted,
    /// An operation returned an error or a verification failed (the reason).
    Rejected(String),
    /// The operations succeeded but an output differs from the vector's.
    WrongOutput(String),
}

/// A signature-verification vector (EdDSA and RSASSA-PSS schemas alike).
#[derive(Deserialize)]
pub struct SignatureTest {
    #[serde(flatten)]
    pub meta: Meta,
    #[serde(deserialize_with = "de_hex")]
    pub msg: Vec<u8>,
    #[serde(deserialize_with = "de_hex")]
    pub sig: Vec<u8>,
}

/// Accepted if the key parses and the signature verifies.
pub fn verify_outcome(key: &Result<IdentityPublicKey, String>, t: &SignatureTest) -> Outcome {
    match key {
        Err(e) => Outcome::Rejected(format!("IdentityPublicKey::from_spki: {e}")),
        Ok(key) if key.verify(&t.msg, &t.sig) => Outcome::Accepted,
        Ok(_) => Outcome::Rejected("verify returned false".to_owned()),
    }
}

/// Per-file counts and failures.
pub struct Tally {
    name: &'static str,
    declared: usize,
    valid: usize,
    invalid: usize,
    acceptable: usize,
    /// Acceptable vectors that our policy required to be rejected.
    policy_rejected: usize,
    /// Acceptable vectors that were rejected (by policy or otherwise).
    acceptable_rejected: usize,
    skipped: BTreeMap<&'static str, usize>,
    failures: Vec<String>,
}

impl Tally {
    pub fn new<G>(name: &'static str, file: &TestFile<G>, algorithm: &str, schema: &str) -> Self {
        assert_eq!(file.algorithm, algorithm, "{name}: algorithm");
        assert_eq!(file.schema, schema, "{name}: schema");
        Tally {
            name,
            declared: file.number_of_tests,
            valid: 0,
            invalid: 0,
            acceptable: 0,
            policy_rejected: 0,
            acceptable_rejected: 0,
            skipped: BTreeMap::new(),
            failures: Vec::new(),
        }
    }

    /// Records a failure for one vector other than its outcome (for example,
    /// a field that disagrees with its group's parameters).
    pub fn fail(&mut self, meta: &Meta, why: impl std::fmt::Display) {
        self.failures.push(format!(
            "tcId {} ({:?}, flags {:?}, {:?}): {why}",
            meta.tc_id, meta.result, meta.flags, meta.comment
        ));
    }

    /// Records a failure about the file as a whole (a summary across vectors).
    pub fn fail_file(&mut self, why: impl std::fmt::Display) {
        self.failures.push(why.to_string());
    }

    /// Checks a vector's outcome against its `result`.
    pub fn check(&mut self, meta: &Meta, outcome: Outcome) {
        self.check_with_policy(meta, false, outcome);
    }

    /// Checks a vector's outcome; `must_reject` makes our policy refuse an
    /// `acceptable` vector.
    pub fn check_with_policy(&mut self, meta: &Meta, must_reject: bool, outcome: Outcome) {
        match meta.result {
            Expected::Valid => self.valid += 1,
            Expected::Invalid => self.invalid += 1,
            Expected::Acceptable => {
                self.acceptable += 1;
                self.policy_rejected += usize::from(must_reject);
                self.acceptable_rejected += usize::from(matches!(outcome, Outcome::Rejected(_)));
            }
        }
        let error = match (meta.result, &outcome) {
            (Expected::Valid, Outcome::Accepted) | (Expected::Invalid, Outcome::Rejected(_)) => None,
            (Expected::Acceptable, Outcome::Rejected(_)) => None,
            (Expected::Acceptable, Outcome::Accepted) if !must_reject => None,
            (Expected::Acceptable, Outcome::Accepted) => Some("accepted, but our policy requires rejection".to_owned()),
            (Expected::Valid, Outcome::Rejected(why)) => Some(format!("valid vector rejected: {why}")),
            (_, Outcome::WrongOutput(why)) => Some(format!("wrong output: {why}")),
            (Expected::Invalid, Outcome::Accepted) => Some("invalid vector accepted".to_owned()),
        };
        if let Some(why) = error {
            self.fail(meta, why);
        }
    }

    /// Counts a vector whose parameters we do not support. Callers must first
    /// assert that our API refuses those parameters, or explain why they cannot
    /// be expressed.
    pub fn skip(&mut self, reason: &'static str) {
        *self.skipped.entry(reason).or_default() += 1;
    }

    /// Prints the counts and fails on any failure or unaccounted vector.
    pub fn finish(self) {
        let skipped: usize = self.skipped.values().sum();
        let checked = self.valid + self.invalid + self.acceptable;
        let mut line = format!(
            "wycheproof {}: {}/{} (valid {}, invalid {}, acceptable {}",
            self.name,
            checked + skipped,
            self.declared,
            self.valid,
            self.invalid,
            self.acceptable
        );
        if self.acceptable > 0 {
            line += &format!(
                " [{} accepted, {} rejected; {} required rejected by policy]",
                self.acceptable - self.acceptable_rejected,
                self.acceptable_rejected,
                self.policy_rejected
            );
        }
        line += &format!("; skipped-unsupported {skipped}");
        if !self.skipped.is_empty() {
            let reasons: Vec<String> = self.skipped.iter().map(|(r, n)| format!("{n} {r}")).collect();
            line += &format!(" [{}]", reasons.join("; "));
        }
        line += ")";
        println!("{line}");
        assert!(
            self.failures.is_empty(),
            "wycheproof {}: {} failure(s):\n  {}",
            self.name,
            self.failures.len(),
            self.failures.join("\n  ")
        );
        assert_eq!(
            checked + skipped,
            self.declared,
            "wycheproof {}: vectors accounted for != numberOfTests",
            self.name
        );
    }
}
