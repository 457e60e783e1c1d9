//! CRC32C of the short inputs the log checksums most often: frame headers and the payloads
//! of small records.
//!
//! The `crc32c` crate aligns its input to 8 bytes and takes the bytes before the first
//! boundary one `crc32` instruction each, whose three-cycle latencies add up on a short
//! input at an odd address; a frame checksum (a 13-byte header and a payload of a few dozen
//! bytes) took about 20 ns of a durable insert there. Loading eight bytes at a time from any
//! address, and the tail as 4, 2 and 1, takes about a third as many. Long inputs go to the
//! crate, which runs three streams of instructions side by side. A frame header's fields
//! are checksummed from their values ([`of_fields`]), never stored and read back first.
//!
//! Besides `mmap`, the one other module that needs `unsafe`: calling a function compiled
//! for SSE 4.2 (the intrinsics are `target_feature` functions, unsafe to call before Rust
//! 1.86, which `rust-version` still admits) once the processor is known to have it.
#![allow(unsafe_code)]

/// Inputs up to this length take the short path; the crate's parallel streams start at
/// 768 bytes, and below them it runs one stream as this does.
const SHORT: usize = 512;

/// The CRC32C (Castagnoli) of `data`, continuing from `crc`, the CRC of what came before:
/// `append(append(0, a), b)` is the CRC of `a` followed by `b`, as in `crc32c::crc32c_append`.
#[inline]
pub(crate) fn append(crc: u32, data: &[u8]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    if data.len() <= SHORT && std::is_x86_feature_detected!("sse4.2") {
        // SAFETY: `short_sse42` is compiled for SSE 4.2 and only runs on a processor that
        // has it, which the line above checked; it reads `data` through safe slices only.
        return unsafe { short_sse42(crc, data) };
    }
    crc32c::crc32c_append(crc, data)
}

/// The CRC32C of `data`.
#[inline]
pub(crate) fn checksum(data: &[u8]) -> u32 {
    append(0, data)
}

/// The CRC32C of the little-endian bytes of `a`, then `b`, then `c` (a frame header's
/// fields), taken from the values themselves: built in memory and read back as words, the
/// header's narrow stores cannot be forwarded to the wider loads, a stall on every append.
#[inline]
pub(crate) fn of_fields(a: u32, b: u8, c: u64) -> u32 {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("sse4.2") {
        // SAFETY: `fields_sse42` is compiled for SSE 4.2 and only runs on a processor that
        // has it, which the line above checked.
        return unsafe { fields_sse42(a, b, c) };
    }
    fields_portable(a, b, c)
}

/// [`of_fields`] without SSE 4.2: the crate over the same bytes.
#[cold]
fn fields_portable(a: u32, b: u8, c: u64) -> u32 {
    let mut bytes = [0u8; 13];
    bytes[..4].copy_from_slice(&a.to_le_bytes());
    bytes[4] = b;
    bytes[5..].copy_from_slice(&c.to_le_bytes());
    crc32c::crc32c(&bytes)
}

/// # Safety
///
/// The processor must have SSE 4.2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
unsafe fn fields_sse42(a: u32, b: u8, c: u64) -> u32 {
    use std::arch::x86_64::{_mm_crc32_u32, _mm_crc32_u64, _mm_crc32_u8};
    // Each instruction takes its operand's bytes least significant first, as the
    // little-endian bytes would come; the inversions are those of `short_sse42`.
    let crc = _mm_crc32_u8(_mm_crc32_u32(!0, a), b);
    // The instruction's result fits in 32 bits.
    !(_mm_crc32_u64(u64::from(crc), c) as u32)
}

/// # Safety
///
/// The processor must have SSE 4.2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
unsafe fn short_sse42(crc: u32, data: &[u8]) -> u32 {
    // The `crc32` intrinsics need no `unsafe` block here: this function has SSE 4.2
    // enabled, and before Rust 1.86 the body of an `unsafe fn` is an unsafe context.
    use std::arch::x86_64::{_mm_crc32_u16, _mm_crc32_u32, _mm_crc32_u64, _mm_crc32_u8};
    // The hardware instruction computes the reflected CRC without the pre- and
    // post-inversion of CRC32C, which this adds, as the crate does.
    let mut words = data.chunks_exact(8);
    let mut c = u64::from(!crc);
    for w in &mut words {
        let w = u64::from_le_bytes(w.try_into().unwrap_or_default());
        c = _mm_crc32_u64(c, w);
    }
    // The instruction's result fits in 32 bits; the upper half of `c` is zero.
    let mut c = c as u32;
    let mut rest = words.remainder();
    if let Some((four, tail)) = rest.split_first_chunk::<4>() {
        c = _mm_crc32_u32(c, u32::from_le_bytes(*four));
        rest = tail;
    }
    if let Some((two, tail)) = rest.split_first_chunk::<2>() {
        c = _mm_crc32_u16(c, u16::from_le_bytes(*two));
        rest = tail;
    }
    if let Some(&b) = rest.first() {
        c = _mm_crc32_u8(c, b);
    }
    !c
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes that are not a pattern the CRC could be blind to.
    fn noise(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn agrees_with_the_crate_at_every_length_offset_and_starting_crc() {
        let bytes = noise(2 * SHORT + 64, 7);
        // Every length across the short path's end, at every alignment, from a fresh start
        // and continuing another CRC.
        for len in 0..=SHORT + 40 {
            for offset in 0..8 {
                let data = &bytes[offset..offset + len];
                for start in [0, 0xDEAD_BEEF] {
                    assert_eq!(
                        append(start, data),
                        crc32c::crc32c_append(start, data),
                        "length {len} at offset {offset} from {start:#x}"
                    );
                }
            }
        }
        // A long input, which the crate takes.
        assert_eq!(checksum(&bytes), crc32c::crc32c(&bytes));
    }

    #[test]
    fn matches_the_published_check_value_and_chains() {
        // The check value of CRC-32C (iSCSI) for "123456789".
        assert_eq!(checksum(b"123456789"), 0xE306_9283);
        assert_eq!(append(checksum(b"1234"), b"56789"), 0xE306_9283);
        assert_eq!(checksum(b""), 0);
    }

    /// CRC32C a bit at a time from its definition (reflected polynomial 0x82F63B78), a
    /// reference that shares no code with either path.
    fn bitwise(data: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &byte in data {
            crc ^= u32::from(byte);
            for _ in 0..8 {
                crc = if crc & 1 == 1 { (crc >> 1) ^ 0x82F6_3B78 } else { crc >> 1 };
            }
        }
        !crc
    }

    #[test]
    fn fields_are_checksummed_as_their_little_endian_bytes() {
        assert_eq!(bitwise(b"123456789"), 0xE306_9283, "the reference itself");
        let words = noise(3 * 8 * 64, 11);
        for w in words.chunks_exact(24) {
            let a = u32::from_le_bytes(w[..4].try_into().unwrap());
            let c = u64::from_le_bytes(w[8..16].try_into().unwrap());
            for (a, b, c) in [(a, w[4], c), (0, 0, 0), (u32::MAX, u8::MAX, u64::MAX)] {
                let mut bytes = a.to_le_bytes().to_vec();
                bytes.push(b);
                bytes.extend_from_slice(&c.to_le_bytes());
                let expected = bitwise(&bytes);
                assert_eq!(of_fields(a, b, c), expected, "{a:#x} {b:#x} {c:#x}");
                // The path a processor without SSE 4.2 takes, run here too.
                assert_eq!(fields_portable(a, b, c), expected, "{a:#x} {b:#x} {c:#x}");
            }
        }
    }
}
