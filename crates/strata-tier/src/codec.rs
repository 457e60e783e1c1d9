//! The [`Codec`] seam: typed keys and values to bytes and back, with size limits.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{Error, Result};

/// Turns a `T` into bytes and back. Implementations must never panic on any input bytes.
pub trait Codec<T>: Send + Sync + 'static {
    /// Appends the encoding of `value` to `out`, leaving the bytes already in `out`
    /// untouched: callers encode straight into a record they are building (the durable
    /// cache's log records), so an implementation that clears, truncates or replaces `out`
    /// corrupts that record. One that shortens `out` below what it was given is refused
    /// with [`Error::Codec`].
    ///
    /// # Errors
    ///
    /// [`Error::Codec`] if `value` cannot be encoded, [`Error::TooLarge`] if its encoding
    /// exceeds the codec's limit; `out` may then hold a partial encoding, which the caller
    /// discards.
    fn encode(&self, value: &T, out: &mut Vec<u8>) -> Result<()>;

    /// Decodes a `T` from exactly `bytes`.
    ///
    /// # Errors
    ///
    /// [`Error::Codec`] for bytes that are not a valid encoding, [`Error::TooLarge`] for more
    /// bytes than the limit.
    fn decode(&self, bytes: &[u8]) -> Result<T>;
}

/// The default codec: serde + postcard, with a bound on the encoded size.
#[derive(Clone, Copy, Debug)]
pub struct Postcard {
    max_len: usize,
    what: &'static str,
}

impl Postcard {
    /// The default limit on an encoded key: 64 KiB.
    pub const DEFAULT_MAX_KEY: usize = 64 << 10;
    /// The default limit on an encoded value: 16 MiB.
    pub const DEFAULT_MAX_VALUE: usize = 16 << 20;

    /// A codec for keys, limited to [`Self::DEFAULT_MAX_KEY`] bytes.
    pub fn keys() -> Self {
        Postcard { max_len: Self::DEFAULT_MAX_KEY, what: "key" }
    }

    /// A codec for values, limited to [`Self::DEFAULT_MAX_VALUE`] bytes.
    pub fn values() -> Self {
        Postcard { max_len: Self::DEFAULT_MAX_VALUE, what: "value" }
    }

    /// The same codec with another limit.
    pub fn with_max_len(self, max_len: usize) -> Self {
        Postcard { max_len, ..self }
    }

    /// The limit on an encoding, in bytes.
    pub fn max_len(&self) -> usize {
        self.max_len
    }
}

impl<T: Serialize + DeserializeOwned> Codec<T> for Postcard {
    fn encode(&self, value: &T, out: &mut Vec<u8>) -> Result<()> {
        let start = out.len();
        postcard::serialize_with_flavor(value, Append(out))
            .map_err(|e| Error::Codec(format!("cannot encode {}: {e}", self.what)))?;
        let len = out.len() - start;
        if len > self.max_len {
            out.truncate(start);
            return Err(Error::TooLarge { what: self.what, len, max: self.max_len });
        }
        Ok(())
    }

    fn decode(&self, bytes: &[u8]) -> Result<T> {
        if bytes.len() > self.max_len {
            return Err(Error::TooLarge { what: self.what, len: bytes.len(), max: self.max_len });
        }
        // Postcard never allocates more than the input can describe: sequence lengths are
        // checked against the bytes that remain, so a hostile length prefix cannot blow up.
        let (value, rest) = postcard::take_from_bytes::<T>(bytes)
            .map_err(|e| Error::Codec(format!("cannot decode {}: {e}", self.what)))?;
        if !rest.is_empty() {
            return Err(Error::Codec(format!(
                "{} trailing bytes after the {}",
                rest.len(),
                self.what
            )));
        }
        Ok(value)
    }
}

/// A postcard flavor that appends to a borrowed buffer. (Postcard's `to_extend` takes the
/// buffer by value and hands it back, two moves of the `Vec` per call, and pushes through
/// `Extend`; on the durable cache's write path, which encodes a key and a value per
/// write, this is a few nanoseconds less per encoding.)
struct Append<'a>(&'a mut Vec<u8>);

/// The longest slice [`Append`] copies a byte at a time: a varint is at most 10 bytes.
const SHORT: usize = 16;

impl postcard::ser_flavors::Flavor for Append<'_> {
    type Output = ();

    #[inline]
    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.push(data);
        Ok(())
    }

    #[inline]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        // Postcard hands over every integer as a slice of a varint it has just built on the
        // stack a byte at a time. `extend_from_slice` copies such a slice with a call to
        // `memcpy`, which picks a size class and reads the bytes back with one wide load that
        // cannot be forwarded from the narrow stores still in flight (a stall of a dozen
        // cycles, twice per durable write). Copied a byte at a time, each load is forwarded.
        if data.len() <= SHORT {
            self.0.reserve(SHORT);
            for &b in data {
                self.0.push(b);
            }
        } else {
            self.0.extend_from_slice(data);
        }
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_enforces_limits() {
        let c = Postcard::values().with_max_len(16);
        let mut out = Vec::new();
        Codec::<String>::encode(&c, &"hello".to_string(), &mut out).unwrap();
        assert_eq!(Codec::<String>::decode(&c, &out).unwrap(), "hello");
        let mut big = Vec::new();
        let err = Codec::<String>::encode(&c, &"x".repeat(64), &mut big).unwrap_err();
        assert!(matches!(err, Error::TooLarge { len: 65, max: 16, .. }), "{err}");
        assert!(big.is_empty(), "a rejected encoding leaves nothing behind");
        assert!(Codec::<String>::decode(&c, &[0xff; 4]).is_err());
        out.push(0);
        assert!(Codec::<String>::decode(&c, &out).is_err(), "trailing bytes are an error");
    }

    #[test]
    fn appends_after_what_the_buffer_holds_exactly_as_postcard_encodes() {
        // Integers of every varint length (copied a byte at a time) and strings on both sides
        // of the short-copy bound, each after bytes already in the buffer.
        let c = Postcard::values();
        let values: Vec<(u64, String)> =
            (0..64).map(|i| (u64::MAX >> i, "s".repeat(i as usize % (2 * SHORT)))).collect();
        for value in &values {
            let mut out = vec![0xa5; 3];
            Codec::<(u64, String)>::encode(&c, value, &mut out).unwrap();
            assert_eq!(out[..3], [0xa5; 3], "the bytes before are untouched");
            assert_eq!(out[3..], postcard::to_stdvec(value).unwrap()[..]);
            assert_eq!(&Codec::<(u64, String)>::decode(&c, &out[3..]).unwrap(), value);
        }
    }
}
