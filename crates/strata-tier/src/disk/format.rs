//! The bytes of a region file: a fixed header, then entries back to back, then zeros.
//!
//! ```text
//! region header (REGION_HEADER_LEN = 64 bytes, little endian)
//!   0..8    magic  b"STRTDSK1"
//!   8..12   format version (1)
//!   12..16  region size in bytes
//!   16..24  generation: regions are reclaimed and recovered in generation order
//!   24..32  floor: entries with a sequence number below it were cleared and are ignored
//!   32..36  CRC32C of bytes 0..32
//!   36..64  zero
//!
//! entry (ENTRY_HEADER_LEN = 40 bytes, then the key, then the value)
//!   0..4    magic: PUT_MAGIC or TOMBSTONE_MAGIC
//!   4..8    header CRC32C: of bytes 0..4 and 8..40
//!   8..12   entry CRC32C: of bytes 0..4, 12..40, the key and the value
//!   12..16  key length
//!   16..20  value length (0 for a tombstone)
//!   20..24  zero
//!   24..32  sequence number: a later write of a key has a larger one
//!   32..40  expiry in Unix milliseconds, 0 for none
//! ```
//!
//! The unused tail of a region is zero (region files are created at their full length, and
//! sparse), so a zero magic followed by a zero header ends a region cleanly; anything else
//! that does not parse and pass its checksums is corruption. The header has a checksum of its
//! own so that an entry whose key or value is damaged but whose header is intact can be
//! skipped (its length is trusted) and the entries after it recovered; a damaged header ends
//! the region's scan. Decoding never panics and never reads outside the slice it is given.

use crate::tier::ExpiresAt;

/// The length of a region header.
pub(super) const REGION_HEADER_LEN: usize = 64;
/// The length of an entry header.
pub(super) const ENTRY_HEADER_LEN: usize = 40;

const REGION_MAGIC: [u8; 8] = *b"STRTDSK1";
const VERSION: u32 = 1;
const PUT_MAGIC: u32 = 0x5054_5331; // "1STP" on disk: a put
const TOMBSTONE_MAGIC: u32 = 0x4D54_5331; // "1STM" on disk: a removal

/// A region's header fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct RegionHeader {
    /// The region file's length when created.
    pub(super) region_size: u32,
    /// The region's place in reclaim and recovery order.
    pub(super) generation: u64,
    /// Entries below this sequence number were cleared.
    pub(super) floor: u64,
}

impl RegionHeader {
    /// The header's bytes.
    pub(super) fn encode(&self) -> [u8; REGION_HEADER_LEN] {
        let mut b = [0u8; REGION_HEADER_LEN];
        b[0..8].copy_from_slice(&REGION_MAGIC);
        b[8..12].copy_from_slice(&VERSION.to_le_bytes());
        b[12..16].copy_from_slice(&self.region_size.to_le_bytes());
        b[16..24].copy_from_slice(&self.generation.to_le_bytes());
        b[24..32].copy_from_slice(&self.floor.to_le_bytes());
        let crc = crc32c::crc32c(&b[0..32]);
        b[32..36].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Parses a header, or says what is wrong with it.
    pub(super) fn decode(b: &[u8]) -> Result<Self, &'static str> {
        let Some(b) = b.get(..REGION_HEADER_LEN) else {
            return Err("region header truncated");
        };
        if b[0..8] != REGION_MAGIC {
            return Err("not a region file (bad magic)");
        }
        if crc32c::crc32c(&b[0..32]) != u32_at(b, 32) {
            return Err("region header checksum mismatch");
        }
        if u32_at(b, 8) != VERSION {
            return Err("unknown region format version");
        }
        Ok(RegionHeader {
            region_size: u32_at(b, 12),
            generation: u64_at(b, 16),
            floor: u64_at(b, 24),
        })
    }
}

/// Whether an entry stores a value or records a removal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    /// A value for the key.
    Put,
    /// The key was removed; older entries for it must not come back.
    Tombstone,
}

/// An entry decoded from a region, borrowing its bytes.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Record<'a> {
    pub(super) kind: Kind,
    pub(super) seq: u64,
    pub(super) expires_at: Option<ExpiresAt>,
    pub(super) key: &'a [u8],
    pub(super) value: &'a [u8],
    /// The entry's whole length, header included.
    pub(super) len: usize,
}

/// What is found at an offset of a region.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Scan<'a> {
    /// A valid entry.
    Entry(Record<'a>),
    /// The region's written part ends here.
    End,
    /// The bytes here are not a valid entry.
    Corrupt {
        /// What is wrong, in words.
        why: &'static str,
        /// The entry's length when its header is intact (only its key or value is damaged),
        /// so that a scan can skip it; `None` when nothing after it can be located.
        skip: Option<usize>,
    },
}

/// The encoded length of an entry with these key and value lengths.
pub(super) fn entry_len(key_len: usize, value_len: usize) -> usize {
    ENTRY_HEADER_LEN.saturating_add(key_len).saturating_add(value_len)
}

/// Appends an entry to `out`. Lengths must fit in `u32`; the caller checks them against the
/// configured maximum first.
pub(super) fn encode_entry(
    out: &mut Vec<u8>,
    kind: Kind,
    seq: u64,
    expires_at: Option<ExpiresAt>,
    key: &[u8],
    value: &[u8],
) {
    let start = out.len();
    let magic = match kind {
        Kind::Put => PUT_MAGIC,
        Kind::Tombstone => TOMBSTONE_MAGIC,
    };
    out.extend_from_slice(&magic.to_le_bytes());
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&len_u32(key.len()).to_le_bytes());
    out.extend_from_slice(&len_u32(value.len()).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&expires_at.map_or(0, |e| e.0).to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(value);
    let entry = &mut out[start..];
    let body = entry_crc(entry);
    entry[8..12].copy_from_slice(&body.to_le_bytes());
    let head = header_crc(entry);
    entry[4..8].copy_from_slice(&head.to_le_bytes());
}

/// Decodes the entry that starts at `at` in `region` (the whole region's bytes, or for a
/// single entry read on its own, exactly that entry's bytes with `at` = 0).
pub(super) fn decode_entry(region: &[u8], at: usize) -> Scan<'_> {
    let corrupt = |why| Scan::Corrupt { why, skip: None };
    let rest = region.get(at..).unwrap_or(&[]);
    if rest.len() < ENTRY_HEADER_LEN {
        // A file cut inside the last header, or a region whose tail is too short for one.
        return if rest.iter().all(|&b| b == 0) {
            Scan::End
        } else {
            corrupt("truncated entry header")
        };
    }
    let head = &rest[..ENTRY_HEADER_LEN];
    let kind = match u32_at(head, 0) {
        PUT_MAGIC => Kind::Put,
        TOMBSTONE_MAGIC => Kind::Tombstone,
        0 if head.iter().all(|&b| b == 0) => return Scan::End,
        _ => return corrupt("bad entry magic"),
    };
    if header_crc(head) != u32_at(head, 4) {
        return corrupt("entry header checksum mismatch");
    }
    let key_len = u32_at(head, 12) as usize;
    let value_len = u32_at(head, 16) as usize;
    let len = entry_len(key_len, value_len);
    if kind == Kind::Tombstone && value_len != 0 {
        return Scan::Corrupt { why: "tombstone with a value", skip: Some(len) };
    }
    let Some(bytes) = rest.get(..len) else {
        return corrupt("entry runs past the end of the region");
    };
    if entry_crc(bytes) != u32_at(bytes, 8) {
        return Scan::Corrupt { why: "entry checksum mismatch", skip: Some(len) };
    }
    let expires = u64_at(bytes, 32);
    let key_end = ENTRY_HEADER_LEN + key_len;
    Scan::Entry(Record {
        kind,
        seq: u64_at(bytes, 24),
        expires_at: (expires != 0).then_some(ExpiresAt(expires)),
        key: &bytes[ENTRY_HEADER_LEN..key_end],
        value: &bytes[key_end..],
        len,
    })
}

/// The header's checksum: its 40 bytes but the checksum field itself.
fn header_crc(entry: &[u8]) -> u32 {
    let crc = crc32c::crc32c(&entry[0..4]);
    crc32c::crc32c_append(crc, &entry[8..ENTRY_HEADER_LEN])
}

/// The entry's checksum: everything but the two checksum fields.
fn entry_crc(entry: &[u8]) -> u32 {
    let crc = crc32c::crc32c(&entry[0..4]);
    crc32c::crc32c_append(crc, &entry[12..])
}

fn len_u32(len: usize) -> u32 {
    // The builder caps entries far below 4 GiB, so this never saturates in practice; if it
    // did, the checksum would fail and the entry would be dropped, never misread.
    u32::try_from(len).unwrap_or(u32::MAX)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(w)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region_with(entries: &[(Kind, u64, &[u8], &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for &(kind, seq, key, value) in entries {
            encode_entry(&mut out, kind, seq, Some(ExpiresAt(99)), key, value);
        }
        out.resize(out.len() + 100, 0);
        out
    }

    #[test]
    fn entries_round_trip_and_the_zero_tail_ends_the_region() {
        let region =
            region_with(&[(Kind::Put, 7, b"key", b"value"), (Kind::Tombstone, 8, b"k2", b"")]);
        let Scan::Entry(first) = decode_entry(&region, 0) else { panic!("first entry") };
        assert_eq!(
            (first.kind, first.seq, first.key, first.value),
            (Kind::Put, 7, &b"key"[..], &b"value"[..])
        );
        assert_eq!(first.expires_at, Some(ExpiresAt(99)));
        assert_eq!(first.len, ENTRY_HEADER_LEN + 8);
        let Scan::Entry(second) = decode_entry(&region, first.len) else { panic!("second entry") };
        assert_eq!(
            (second.kind, second.key, second.value),
            (Kind::Tombstone, &b"k2"[..], &b""[..])
        );
        assert_eq!(decode_entry(&region, first.len + second.len), Scan::End);
        assert_eq!(decode_entry(&region, region.len()), Scan::End);
        assert_eq!(decode_entry(&region, region.len() + 5), Scan::End);
    }

    #[test]
    fn every_flipped_bit_is_caught() {
        let region = region_with(&[(Kind::Put, 1, b"abc", b"0123456789")]);
        let len = entry_len(3, 10);
        for byte in 0..len {
            for bit in 0..8 {
                let mut bad = region.clone();
                bad[byte] ^= 1 << bit;
                match decode_entry(&bad, 0) {
                    // Damage to the header stops a scan; damage to the key or value lets it
                    // skip exactly this entry.
                    Scan::Corrupt { skip: None, .. } if byte < ENTRY_HEADER_LEN => {}
                    Scan::Corrupt { skip: Some(l), .. } if byte >= ENTRY_HEADER_LEN && l == len => {
                    }
                    other => panic!("flip of bit {bit} in byte {byte} gave {other:?}"),
                }
            }
        }
    }

    #[test]
    fn every_truncation_is_corrupt_or_end_never_an_entry() {
        let region = region_with(&[(Kind::Put, 1, b"abc", b"0123456789")]);
        let len = entry_len(3, 10);
        for cut in 0..len {
            let got = decode_entry(&region[..cut], 0);
            let want_end = cut == 0;
            assert!(
                if want_end {
                    got == Scan::End
                } else {
                    matches!(got, Scan::Corrupt { skip: None, .. })
                },
                "cut at {cut}: {got:?}"
            );
        }
        assert!(matches!(decode_entry(&region[..len], 0), Scan::Entry(_)));
    }

    #[test]
    fn region_headers_round_trip_and_reject_damage() {
        let h = RegionHeader { region_size: 4096, generation: 3, floor: 17 };
        let bytes = h.encode();
        assert_eq!(RegionHeader::decode(&bytes), Ok(h));
        assert!(RegionHeader::decode(&bytes[..40]).is_err());
        for byte in 0..36 {
            let mut bad = bytes;
            bad[byte] ^= 0x10;
            assert!(RegionHeader::decode(&bad).is_err(), "flip in byte {byte}");
        }
    }
}
