//! End-to-end file chunks (PROTOCOL.md §13.12): what the format promises
//! against a relay that stores and forwards the chunks — any reorder,
//! drop, repeat, truncation, extension, alteration or substitution fails —
//! and the bytes recomputed straight from the specification.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::hkdf;
use cipherline_proto::Error;
use cipherline_proto::filestream::{CHUNK_SIZE, FileCipher, SEALED_CHUNK_SIZE, chunk_count, nonce};
use proptest::prelude::*;

const KEY: [u8; 32] = [7; 32];

fn file(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

fn seal_all(cipher: &FileCipher, data: &[u8]) -> Vec<Vec<u8>> {
    let chunks: Vec<&[u8]> = if data.is_empty() { vec![&[][..]] } else { data.chunks(CHUNK_SIZE).collect() };
    chunks.iter().enumerate().map(|(i, c)| cipher.seal(i as u64, c).unwrap()).collect()
}

#[test]
fn a_file_round_trips_and_each_chunk_opens_in_any_order() {
    let data = file(3 * CHUNK_SIZE + 100);
    let cipher = FileCipher::new(&KEY, data.len() as u64).unwrap();
    let sealed = seal_all(&cipher, &data);
    assert_eq!(sealed.len(), 4);
    assert_eq!(sealed[0].len(), SEALED_CHUNK_SIZE);
    assert_eq!(sealed[3].len(), 100 + 16);
    // A resumed download opens chunks by index, in any order.
    let mut out = vec![Vec::new(); 4];
    for i in [2usize, 0, 3, 1] {
        out[i] = cipher.open(i as u64, &sealed[i]).unwrap().to_vec();
    }
    assert_eq!(out.concat(), data);
    // An empty file is one empty last chunk.
    let empty = FileCipher::new(&KEY, 0).unwrap();
    let sealed = seal_all(&empty, &[]);
    assert_eq!(sealed[0].len(), 16);
    assert!(empty.open(0, &sealed[0]).unwrap().is_empty());
}

#[test]
fn reordered_repeated_truncated_extended_or_foreign_chunks_fail() {
    let data = file(3 * CHUNK_SIZE);
    let size = data.len() as u64;
    let cipher = FileCipher::new(&KEY, size).unwrap();
    let sealed = seal_all(&cipher, &data);
    // Swapped: chunk 0's bytes where chunk 1 belongs.
    assert!(matches!(cipher.open(1, &sealed[0]), Err(Error::DecryptFailed)));
    // A chunk beyond the end (extension) has no place.
    assert!(matches!(cipher.open(3, &sealed[2]), Err(Error::DecryptFailed)));
    // Truncation: a receiver told the file is two chunks long expects the
    // second to be the last; the sender sealed it as not last.
    let short = FileCipher::new(&KEY, 2 * CHUNK_SIZE as u64).unwrap();
    assert!(matches!(short.open(1, &sealed[1]), Err(Error::DecryptFailed)));
    // The same content under another file key, or with a bit flipped.
    let other = FileCipher::new(&[8; 32], size).unwrap();
    assert!(matches!(other.open(0, &sealed[0]), Err(Error::DecryptFailed)));
    let mut flipped = sealed[2].clone();
    flipped[100] ^= 1;
    assert!(matches!(cipher.open(2, &flipped), Err(Error::DecryptFailed)));
    // Cut short or padded.
    assert!(cipher.open(2, &sealed[2][..sealed[2].len() - 1]).is_err());
    let mut longer = sealed[2].clone();
    longer.push(0);
    assert!(cipher.open(2, &longer).is_err());
    // The sender cannot seal a chunk of the wrong length or past the end.
    assert!(matches!(cipher.seal(0, &data[..10]), Err(Error::ApiMisuse(_))));
    assert!(matches!(cipher.seal(3, &[]), Err(Error::ApiMisuse(_))));
}

/// The key schedule and nonce as PROTOCOL.md §13.12 writes them, computed
/// with aws-lc-rs directly: payload key = HKDF-Expand(HKDF-Extract("",
/// file key), info = u16 32 || u8 24 || "cipherline1 file payload" || u8 0,
/// 32); nonce = 3 zero bytes || u64 index || u8 last.
#[test]
fn the_bytes_are_those_of_the_specification() {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, &[]).extract(&KEY);
    let label = b"cipherline1 file payload";
    let mut info = vec![0, 32, label.len() as u8];
    info.extend_from_slice(label);
    info.push(0);
    let mut payload = [0u8; 32];
    prk.expand(&[&info], hkdf::HKDF_SHA256).unwrap().fill(&mut payload).unwrap();
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &payload).unwrap());
    let data = file(CHUNK_SIZE + 5);
    let cipher = FileCipher::new(&KEY, data.len() as u64).unwrap();
    for (index, chunk) in data.chunks(CHUNK_SIZE).enumerate() {
        let last = index == 1;
        let mut n = [0u8; 12];
        n[3..11].copy_from_slice(&(index as u64).to_be_bytes());
        n[11] = u8::from(last);
        assert_eq!(nonce(index as u64, last), n);
        let mut expected = chunk.to_vec();
        key.seal_in_place_append_tag(Nonce::assume_unique_for_key(n), Aad::empty(), &mut expected).unwrap();
        assert_eq!(cipher.seal(index as u64, chunk).unwrap(), expected, "chunk {index}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Whatever bytes a relay substitutes for a chunk, opening fails
    /// cleanly (never a panic, never other plaintext).
    #[test]
    fn any_substituted_bytes_fail_to_open(index in 0u64..4, bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let cipher = FileCipher::new(&KEY, 2 * CHUNK_SIZE as u64 + 200).unwrap();
        prop_assert_eq!(chunk_count(2 * CHUNK_SIZE as u64 + 200), 3);
        prop_assert!(cipher.open(index, &bytes).is_err());
    }
}
