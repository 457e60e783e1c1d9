//! The bytes the Redis tier stores and publishes.
//!
//! A stored value is `[MAGIC, VERSION, flags, expiry: u64 LE, value...]`: the expiry travels
//! inside the value so that a reader checks it against its own clock even when Redis has not
//! yet expired the key (Redis expires lazily and by sampling, and its clock may differ from
//! ours). An invalidation notice is `[VERSION, kind, origin: 16 bytes, key...]`.

use std::hash::{BuildHasher, Hasher};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::{ExpiresAt, TierEntry};

/// The first byte of every value this tier writes, so that foreign data under the prefix is
/// recognised instead of being served as a value.
const MAGIC: u8 = 0x53;
/// The version of both formats; a reader rejects versions it does not know.
const VERSION: u8 = 1;
/// Set in the flags byte when the entry has an expiry.
const FLAG_EXPIRES: u8 = 1;
/// The length of the header in front of the value bytes.
pub(super) const HEADER_LEN: usize = 11;

/// Encodes `entry` for a Redis string value.
pub(super) fn encode_entry(entry: &TierEntry) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + entry.value.len());
    out.push(MAGIC);
    out.push(VERSION);
    let (flags, at) = match entry.expires_at {
        Some(ExpiresAt(at)) => (FLAG_EXPIRES, at),
        None => (0, 0),
    };
    out.push(flags);
    out.extend_from_slice(&at.to_le_bytes());
    out.extend_from_slice(&entry.value);
    out
}

/// Decodes a value written by [`encode_entry`], or says why the bytes are not one.
pub(super) fn decode_entry(mut bytes: Vec<u8>) -> Result<TierEntry, String> {
    if bytes.len() < HEADER_LEN {
        return Err(format!("{} bytes, shorter than the {HEADER_LEN}-byte header", bytes.len()));
    }
    if bytes[0] != MAGIC {
        return Err(format!("first byte {:#04x} is not the tier's marker", bytes[0]));
    }
    if bytes[1] != VERSION {
        return Err(format!("format version {} is not known", bytes[1]));
    }
    let flags = bytes[2];
    if flags & !FLAG_EXPIRES != 0 {
        return Err(format!("unknown flags {flags:#04x}"));
    }
    let mut at = [0u8; 8];
    at.copy_from_slice(&bytes[3..HEADER_LEN]);
    let expires_at = (flags & FLAG_EXPIRES != 0).then(|| ExpiresAt(u64::from_le_bytes(at)));
    // Dropping the header in place avoids a second allocation for the value.
    bytes.drain(..HEADER_LEN);
    Ok(TierEntry { value: bytes, expires_at })
}

/// A random identity for one tier instance, so that it can ignore its own notices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Origin(pub(super) [u8; 16]);

impl Origin {
    /// A fresh origin. Uniqueness, not secrecy, is what matters: std's `RandomState` is seeded
    /// from the OS once per process and varied per instance, and the time and process id are
    /// mixed in so that two processes started from one image still differ.
    pub(super) fn random() -> Self {
        let mut bytes = [0u8; 16];
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        for (i, half) in bytes.chunks_mut(8).enumerate() {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u128(nanos);
            h.write_u32(std::process::id());
            h.write_usize(i);
            half.copy_from_slice(&h.finish().to_le_bytes());
        }
        Origin(bytes)
    }
}

/// What a notice says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Notice {
    /// One key was written or removed.
    Key(Vec<u8>),
    /// The whole namespace was cleared.
    All,
}

const KIND_KEY: u8 = b'K';
const KIND_ALL: u8 = b'A';

/// Encodes a notice from `origin`.
pub(super) fn encode_notice(origin: Origin, notice: &Notice) -> Vec<u8> {
    let (kind, key): (u8, &[u8]) = match notice {
        Notice::Key(key) => (KIND_KEY, key),
        Notice::All => (KIND_ALL, &[]),
    };
    let mut out = Vec::with_capacity(18 + key.len());
    out.push(VERSION);
    out.push(kind);
    out.extend_from_slice(&origin.0);
    out.extend_from_slice(key);
    out
}

/// Decodes a notice. A payload that is not one (another version, a stray publisher) is
/// `None`; the subscriber then treats it as "everything may be stale".
pub(super) fn decode_notice(payload: &[u8]) -> Option<(Origin, Notice)> {
    if payload.len() < 18 || payload[0] != VERSION {
        return None;
    }
    let mut origin = [0u8; 16];
    origin.copy_from_slice(&payload[2..18]);
    let notice = match payload[1] {
        KIND_KEY => Notice::Key(payload[18..].to_vec()),
        KIND_ALL if payload.len() == 18 => Notice::All,
        _ => return None,
    };
    Some((Origin(origin), notice))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_bad_bytes_are_rejected() {
        for entry in [
            TierEntry { value: vec![], expires_at: None },
            TierEntry { value: b"hello".to_vec(), expires_at: Some(ExpiresAt(1_700_000_000_123)) },
            TierEntry { value: vec![0; 300], expires_at: Some(ExpiresAt(0)) },
        ] {
            let bytes = encode_entry(&entry);
            assert_eq!(bytes.len(), HEADER_LEN + entry.value.len());
            assert_eq!(decode_entry(bytes).unwrap(), entry);
        }
        let good = encode_entry(&TierEntry { value: b"v".to_vec(), expires_at: None });
        let cases: [(&str, Vec<u8>); 4] = [
            ("short", good[..HEADER_LEN - 1].to_vec()),
            ("magic", [&[0u8][..], &good[1..]].concat()),
            ("version", [&good[..1], &[9u8][..], &good[2..]].concat()),
            ("flags", [&good[..2], &[0x80u8][..], &good[3..]].concat()),
        ];
        for (what, bytes) in cases {
            assert!(decode_entry(bytes).is_err(), "{what} must be rejected");
        }
    }

    #[test]
    fn notices_round_trip_and_origins_differ() {
        let a = Origin::random();
        let b = Origin::random();
        assert_ne!(a, b, "two origins in one process must differ");
        for notice in [Notice::Key(b"k".to_vec()), Notice::Key(vec![]), Notice::All] {
            assert_eq!(decode_notice(&encode_notice(a, &notice)), Some((a, notice)));
        }
        assert_eq!(decode_notice(b"hello"), None);
        let mut bad = encode_notice(a, &Notice::All);
        bad.push(1);
        assert_eq!(decode_notice(&bad), None, "an All notice carries no key");
        bad[1] = b'X';
        assert_eq!(decode_notice(&bad), None);
    }
}
