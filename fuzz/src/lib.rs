//! Drivers for cipherline's fuzz targets.
//!
//! Each `fuzz_targets/*.rs` is one line calling a driver here; the seed
//! generator (`examples/make_seeds.rs`) and the workspace's regression tests
//! include the same driver files, so committed inputs run through the code
//! path that was fuzzed.

pub mod keys;
pub mod proto;
