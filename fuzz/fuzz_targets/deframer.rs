#![no_main]
//! Fuzz target: see `cipherline_fuzz::proto::deframer`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| cipherline_fuzz::proto::deframer(data));
