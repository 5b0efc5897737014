//! The key-file fuzz target's committed inputs (`fuzz/seeds/key_file/`,
//! `fuzz/regressions/key_file/`), run as ordinary tests through the driver
//! the fuzz target calls (`fuzz/src/keys.rs`). CI runs these; it does not
//! fuzz.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

#[path = "../../../fuzz/src/keys.rs"]
mod keys;

use std::path::Path;

#[test]
fn key_file_inputs() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut count = 0;
    for kind in ["seeds", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz.join(kind).join("key_file")) else { continue };
        for entry in entries {
            let path = entry.unwrap().path();
            eprintln!("{}", path.display());
            keys::key_file(&std::fs::read(&path).unwrap());
            count += 1;
        }
    }
    assert!(count > 0, "the seed corpus is committed");
}

#[test]
fn key_files_from_testdata_survive_the_driver() {
    // Every key file the repository ships, in each of the driver's modes.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/keys");
    for entry in std::fs::read_dir(dir).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        for mode in [0u8, 1 + 3, 2] {
            keys::key_file(&[&[mode][..], &bytes].concat());
        }
    }
}
