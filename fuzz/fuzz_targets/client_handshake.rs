#![no_main]
//! Fuzz target: see `cipherline_fuzz::proto::client_handshake`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = cipherline_fuzz::proto::client_handshake(data);
});
