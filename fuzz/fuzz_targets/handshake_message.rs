#![no_main]
//! Fuzz target: see `cipherline_fuzz::proto::handshake_message`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| cipherline_fuzz::proto::handshake_message(data));
