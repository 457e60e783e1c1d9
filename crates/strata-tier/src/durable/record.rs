//! The durable cache's log records: what one WAL payload holds.
//!
//! Each payload is one postcard-encoded [`LogRecord`]. Keys and values inside it are the bytes
//! the user's codecs produced, carried as length-prefixed byte strings, so that replay can skip
//! a superseded value without decoding it. Adding variants at the end keeps old logs readable;
//! an unknown variant (a log from a newer version of this module) fails to decode and recovery
//! reports it as corruption of that record instead of guessing.

use serde::{Deserialize, Serialize, Serializer};

/// Serializes a byte slice as one postcard byte string (a length and the bytes), not as a
/// sequence of single-byte elements; both encode identically, this is only faster.
fn bytes<S: Serializer>(b: &&[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_bytes(b)
}

/// A write of one key to a value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Put<'a> {
    /// The key's codec bytes.
    #[serde(serialize_with = "bytes", borrow)]
    pub(crate) key: &'a [u8],
    /// The value's codec bytes.
    #[serde(serialize_with = "bytes", borrow)]
    pub(crate) value: &'a [u8],
    /// The version this write gave the key (unique across the cache, increasing per key in
    /// log order).
    pub(crate) version: u64,
    /// Absolute wall-clock expiry in Unix milliseconds, if any.
    pub(crate) expires_at: Option<u64>,
}

/// A removal of one key (a tombstone: without it a restart would resurrect the key).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Remove<'a> {
    /// The key's codec bytes.
    #[serde(serialize_with = "bytes", borrow)]
    pub(crate) key: &'a [u8],
    /// The version of the removal.
    pub(crate) version: u64,
}

/// One write inside a transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Op<'a> {
    /// See [`Put`].
    #[serde(borrow)]
    Put(Put<'a>),
    /// See [`Remove`].
    #[serde(borrow)]
    Remove(Remove<'a>),
}

/// One WAL payload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum LogRecord<'a> {
    /// A single-key write.
    #[serde(borrow)]
    Put(Put<'a>),
    /// A single-key removal.
    #[serde(borrow)]
    Remove(Remove<'a>),
    /// Every entry with a lower version is removed.
    Clear {
        /// The version of the clear.
        version: u64,
    },
    /// A committed transaction's writes: all of them or, if the record is torn, none.
    #[serde(borrow)]
    Txn(Vec<Op<'a>>),
    /// Written at the end of a snapshot: every version handed out so far is below this, so
    /// the counter resumes above it even when the entries that held the highest versions are
    /// gone (a version seen by a client is never reused).
    Floor {
        /// The next version the cache would have handed out.
        next_version: u64,
    },
}

impl LogRecord<'_> {
    /// Appends the record's encoding to `out`.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) -> Result<(), postcard::Error> {
        let encoded = postcard::to_extend(self, std::mem::take(out))?;
        *out = encoded;
        Ok(())
    }
}

impl<'a> LogRecord<'a> {
    /// Decodes a record that borrows its keys and values from `bytes`; never panics.
    pub(crate) fn decode(bytes: &'a [u8]) -> Result<Self, postcard::Error> {
        let (rec, rest) = postcard::take_from_bytes::<LogRecord<'a>>(bytes)?;
        if rest.is_empty() {
            Ok(rec)
        } else {
            Err(postcard::Error::DeserializeBadEncoding)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_bad_bytes_are_errors() {
        let recs = [
            LogRecord::Put(Put { key: b"k", value: b"value", version: 7, expires_at: Some(99) }),
            LogRecord::Remove(Remove { key: b"k", version: 8 }),
            LogRecord::Clear { version: 9 },
            LogRecord::Txn(vec![
                Op::Put(Put { key: b"a", value: b"", version: 10, expires_at: None }),
                Op::Remove(Remove { key: b"b", version: 11 }),
            ]),
            LogRecord::Floor { next_version: 12 },
        ];
        for rec in &recs {
            let mut out = vec![];
            rec.encode(&mut out).unwrap();
            assert_eq!(&LogRecord::decode(&out).unwrap(), rec);
            // Every strict prefix is an error, never a panic or a different record.
            for cut in 0..out.len() {
                assert!(LogRecord::decode(&out[..cut]).is_err(), "prefix {cut} of {rec:?}");
            }
            out.push(0);
            assert!(LogRecord::decode(&out).is_err(), "trailing bytes");
        }
        // A variant tag beyond the known ones (a newer format) is refused.
        assert!(LogRecord::decode(&[200, 0]).is_err());
        // A huge length prefix does not allocate or panic.
        assert!(LogRecord::decode(&[3, 0xff, 0xff, 0xff, 0xff, 0x0f]).is_err());
    }
}
