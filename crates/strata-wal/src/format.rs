//! The on-disk format: file headers and record frames. Pure functions, no IO.
//!
//! Every file of the log (segments and checkpoint snapshots) starts with a 24-byte header:
//!
//! ```text
//! magic [8] | version u32 | id u64 | crc32c u32 (of the previous 20 bytes)
//! ```
//!
//! followed by frames, all integers little-endian:
//!
//! ```text
//! crc32c u32 | len u32 | type u8 | seq u64 | payload [len]
//! ```
//!
//! The CRC32C covers everything after itself (length, type, sequence number, payload), so a
//! flipped length field is caught like a flipped payload byte. A length is never trusted: it is
//! checked against the configured maximum and against the bytes actually present before
//! anything is read or allocated.

use std::fmt;

/// Magic bytes opening a segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"STRATAWL";
/// Magic bytes opening a checkpoint snapshot file.
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"STRATASN";
/// The format version this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;
/// Size of the file header in bytes.
pub const HEADER_LEN: usize = 24;
/// Bytes a frame adds around its payload.
pub const FRAME_OVERHEAD: usize = 17;
/// The largest payload the format can express (the length field is a `u32`).
pub const MAX_PAYLOAD_LIMIT: usize = u32::MAX as usize - FRAME_OVERHEAD - HEADER_LEN;

/// Which kind of file a header opens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// A log segment; the header id is the segment id.
    Segment,
    /// A checkpoint snapshot; the header id is the checkpoint id.
    Snapshot,
}

/// A decoded file header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileHeader {
    /// Segment or snapshot.
    pub kind: FileKind,
    /// Segment id or checkpoint id.
    pub id: u64,
}

/// The type byte of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordType {
    /// An owner's record.
    Data,
    /// The last frame of a snapshot; its payload is the number of data frames (u64 LE). A
    /// snapshot without it is incomplete.
    SnapshotEnd,
}

impl RecordType {
    fn to_byte(self) -> u8 {
        match self {
            RecordType::Data => 1,
            RecordType::SnapshotEnd => 2,
        }
    }

    fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(RecordType::Data),
            2 => Some(RecordType::SnapshotEnd),
            _ => None,
        }
    }
}

/// What is wrong with a byte range of a log file.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CorruptionKind {
    /// The file ends inside a header or a frame: typically a write torn by a crash.
    Truncated {
        /// Bytes the header or frame needs from this offset.
        needed: u64,
        /// Bytes left in the file from this offset.
        available: u64,
    },
    /// A frame's length field is larger than the configured maximum record size.
    LengthTooLarge {
        /// The length read.
        len: u64,
        /// The configured maximum.
        max: u64,
    },
    /// The CRC32C stored in a frame or header does not match its bytes.
    ChecksumMismatch {
        /// The checksum stored in the file.
        stored: u32,
        /// The checksum of the bytes found.
        computed: u32,
    },
    /// A frame has a type byte this version does not know, or one that does not belong here.
    BadRecordType(u8),
    /// The header does not start with the expected magic bytes.
    BadMagic,
    /// The header is intact but names another file (its id differs from the file name).
    WrongId {
        /// The id the file name implies.
        expected: u64,
        /// The id in the header.
        found: u64,
    },
    /// A record's sequence number is not the one after its predecessor: records are missing.
    SequenceGap {
        /// The sequence number expected.
        expected: u64,
        /// The sequence number found.
        found: u64,
    },
    /// Segment ids are not contiguous: a whole segment file is missing.
    MissingSegment {
        /// The id expected.
        expected: u64,
        /// The next id present.
        found: u64,
    },
    /// A snapshot does not end with a valid end marker, or its record count is wrong.
    IncompleteSnapshot,
    /// The manifest is unreadable, or names a snapshot that is missing.
    BadManifest(&'static str),
}

impl fmt::Display for CorruptionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CorruptionKind::Truncated { needed, available } => {
                write!(f, "truncated: {needed} bytes needed, {available} present (torn write?)")
            }
            CorruptionKind::LengthTooLarge { len, max } => {
                write!(f, "length field {len} exceeds the maximum record size {max}")
            }
            CorruptionKind::ChecksumMismatch { stored, computed } => {
                write!(f, "checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")
            }
            CorruptionKind::BadRecordType(t) => write!(f, "unexpected record type {t}"),
            CorruptionKind::BadMagic => write!(f, "bad magic bytes: not a Strata WAL file"),
            CorruptionKind::WrongId { expected, found } => {
                write!(f, "header id {found} does not match the file name's id {expected}")
            }
            CorruptionKind::SequenceGap { expected, found } => {
                write!(f, "sequence gap: expected record {expected}, found {found}")
            }
            CorruptionKind::MissingSegment { expected, found } => {
                write!(f, "segment {expected} is missing (next present: {found})")
            }
            CorruptionKind::IncompleteSnapshot => {
                write!(f, "snapshot lacks a valid end marker or its record count is wrong")
            }
            CorruptionKind::BadManifest(why) => write!(f, "bad manifest: {why}"),
        }
    }
}

/// Why a header could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// The bytes are damaged.
    Corrupt(CorruptionKind),
    /// The header is intact but written by another format version.
    Version(u32),
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Encodes a file header.
pub fn encode_header(kind: FileKind, id: u64) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(match kind {
        FileKind::Segment => &SEGMENT_MAGIC,
        FileKind::Snapshot => &SNAPSHOT_MAGIC,
    });
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[12..20].copy_from_slice(&id.to_le_bytes());
    let crc = crate::crc::checksum(&h[..20]);
    h[20..24].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Decodes the header at the start of `bytes`.
///
/// # Errors
///
/// [`HeaderError::Corrupt`] for short, damaged or foreign bytes; [`HeaderError::Version`] for an
/// intact header of another format version (the checksum is verified first, so a flipped
/// version byte reads as corruption, not as a version).
pub fn decode_header(bytes: &[u8]) -> Result<FileHeader, HeaderError> {
    if bytes.len() < HEADER_LEN {
        return Err(HeaderError::Corrupt(CorruptionKind::Truncated {
            needed: HEADER_LEN as u64,
            available: bytes.len() as u64,
        }));
    }
    let kind = if bytes[..8] == SEGMENT_MAGIC {
        FileKind::Segment
    } else if bytes[..8] == SNAPSHOT_MAGIC {
        FileKind::Snapshot
    } else {
        return Err(HeaderError::Corrupt(CorruptionKind::BadMagic));
    };
    let stored = le_u32(bytes, 20);
    let computed = crate::crc::checksum(&bytes[..20]);
    if stored != computed {
        return Err(HeaderError::Corrupt(CorruptionKind::ChecksumMismatch { stored, computed }));
    }
    let version = le_u32(bytes, 8);
    if version != FORMAT_VERSION {
        return Err(HeaderError::Version(version));
    }
    Ok(FileHeader { kind, id: le_u64(bytes, 12) })
}

/// Appends one frame to `out`. The caller has checked `payload.len()` against its maximum,
/// which is at most [`MAX_PAYLOAD_LIMIT`].
pub fn encode_frame(out: &mut Vec<u8>, ty: RecordType, seq: u64, payload: &[u8]) {
    debug_assert!(payload.len() <= MAX_PAYLOAD_LIMIT);
    out.reserve(FRAME_OVERHEAD + payload.len());
    out.extend_from_slice(&frame_header(ty, seq, payload));
    out.extend_from_slice(payload);
}

/// Writes one frame into `out`, which must be exactly `FRAME_OVERHEAD + payload.len()` bytes
/// (the log's memory-mapped segments take frames this way, with no copy in between). The
/// caller has checked `payload.len()` against its maximum. Returns `false`, writing nothing,
/// if `out` has the wrong length.
///
/// Only stores into `out`: the checksum is taken from the header's fields and over `payload`
/// where it is, so no byte just written to a page of the map is read back.
/// (Reading back a frame just stored into the map waited for those stores to reach the
/// cache, a miss for the first store into each line of a fresh page.)
pub fn encode_frame_into(out: &mut [u8], ty: RecordType, seq: u64, payload: &[u8]) -> bool {
    debug_assert!(payload.len() <= MAX_PAYLOAD_LIMIT);
    if out.len() != FRAME_OVERHEAD + payload.len() {
        return false;
    }
    let (head, body) = out.split_at_mut(FRAME_OVERHEAD);
    head.copy_from_slice(&frame_header(ty, seq, payload));
    body.copy_from_slice(payload);
    true
}

/// The header of the frame of `payload`: the CRC over the rest of the header and the
/// payload, the length, the type and the sequence number.
#[inline]
fn frame_header(ty: RecordType, seq: u64, payload: &[u8]) -> [u8; FRAME_OVERHEAD] {
    let mut h = [0u8; FRAME_OVERHEAD];
    // The length fits in a u32 because callers enforce a maximum below MAX_PAYLOAD_LIMIT; the
    // saturation only guards against misuse, and would then fail the decoder's length check.
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let ty = ty.to_byte();
    let crc = crate::crc::append(crate::crc::of_fields(len, ty, seq), payload);
    h[..4].copy_from_slice(&crc.to_le_bytes());
    h[4..8].copy_from_slice(&len.to_le_bytes());
    h[8] = ty;
    h[9..].copy_from_slice(&seq.to_le_bytes());
    h
}

/// A frame decoded in place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The record type.
    pub ty: RecordType,
    /// The sequence number.
    pub seq: u64,
    /// The payload, borrowed from the file bytes.
    pub payload: &'a [u8],
}

impl Frame<'_> {
    /// The number of bytes this frame occupies in the file.
    pub fn encoded_len(&self) -> usize {
        FRAME_OVERHEAD + self.payload.len()
    }
}

/// Decodes the frame at the start of `buf`, refusing payloads longer than `max_payload`.
///
/// Never panics and never allocates: the payload is borrowed.
///
/// # Errors
///
/// The [`CorruptionKind`] of the frame: truncated, too long, bad checksum or unknown type.
pub fn decode_frame(buf: &[u8], max_payload: usize) -> Result<Frame<'_>, CorruptionKind> {
    if buf.len() < FRAME_OVERHEAD {
        return Err(CorruptionKind::Truncated {
            needed: FRAME_OVERHEAD as u64,
            available: buf.len() as u64,
        });
    }
    let stored = le_u32(buf, 0);
    let len = le_u32(buf, 4) as usize;
    if len > max_payload {
        return Err(CorruptionKind::LengthTooLarge { len: len as u64, max: max_payload as u64 });
    }
    let total = FRAME_OVERHEAD + len;
    if buf.len() < total {
        return Err(CorruptionKind::Truncated {
            needed: total as u64,
            available: buf.len() as u64,
        });
    }
    let computed = crate::crc::checksum(&buf[4..total]);
    if stored != computed {
        return Err(CorruptionKind::ChecksumMismatch { stored, computed });
    }
    let ty = RecordType::from_byte(buf[8]).ok_or(CorruptionKind::BadRecordType(buf[8]))?;
    Ok(Frame { ty, seq: le_u64(buf, 9), payload: &buf[FRAME_OVERHEAD..total] })
}

/// Finds the first offset strictly after `from` where a valid frame starts that `accept`
/// approves (salvage uses it to resynchronise after a bad record, accepting only sequence
/// numbers above the last good one).
///
/// The scan costs one length check per byte and one checksum per plausible candidate, so it is
/// linear in the bytes scanned times the largest plausible payload; it ends at the end of
/// `buf`.
pub fn resync(
    buf: &[u8],
    from: usize,
    max_payload: usize,
    accept: impl Fn(&Frame<'_>) -> bool,
) -> Option<usize> {
    let mut at = from.checked_add(1)?;
    while at + FRAME_OVERHEAD <= buf.len() {
        if let Ok(frame) = decode_frame(&buf[at..], max_payload) {
            if accept(&frame) {
                return Some(at);
            }
        }
        at += 1;
    }
    None
}

/// Iterates the frames of one file body (the bytes after the header), stopping at the first
/// bad frame. Used by the fuzz target and by tools; recovery applies its own policy on top of
/// [`decode_frame`] and [`resync`].
#[derive(Clone, Debug)]
pub struct FrameIter<'a> {
    buf: &'a [u8],
    pos: usize,
    base: u64,
    max_payload: usize,
    done: bool,
}

impl<'a> FrameIter<'a> {
    /// Iterates the frames in `body`; `base` is the file offset of `body[0]` (for error
    /// offsets), `max_payload` the largest payload accepted.
    pub fn new(body: &'a [u8], base: u64, max_payload: usize) -> Self {
        FrameIter { buf: body, pos: 0, base, max_payload, done: false }
    }
}

impl<'a> Iterator for FrameIter<'a> {
    /// A frame with its file offset, or the offset and kind of the first bad frame.
    type Item = Result<(u64, Frame<'a>), (u64, CorruptionKind)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.pos >= self.buf.len() {
            return None;
        }
        let offset = self.base + self.pos as u64;
        match decode_frame(&self.buf[self.pos..], self.max_payload) {
            Ok(frame) => {
                self.pos += frame.encoded_len();
                Some(Ok((offset, frame)))
            }
            Err(kind) => {
                self.done = true;
                Some(Err((offset, kind)))
            }
        }
    }
}

#[cfg(test)]
mod tests;
