#![no_main]
//! Fuzz target: see `cipherline_fuzz::keys::key_file`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| cipherline_fuzz::keys::key_file(data));
