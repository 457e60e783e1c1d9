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
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        match self {
            // Written by hand, byte for byte what serde and postcard produce (the tests
            // compare the two): the single-key writes are the hot path, and records are
            // finished under the WAL's lock, where encoding must not fail.
            LogRecord::Put(p) => {
                out.push(PUT_TAG);
                p.encode_fields(out);
            }
            LogRecord::Remove(r) => {
                out.push(REMOVE_TAG);
                r.encode_fields(out);
            }
            LogRecord::Clear { version } => clear(out, *version),
            LogRecord::Txn(ops) => txn(out, ops.iter().cloned()),
            LogRecord::Floor { next_version } => {
                out.push(FLOOR_TAG);
                put_varint(out, *next_version);
            }
        }
    }
}

/// Postcard's variant index of [`LogRecord::Put`] (one varint byte).
const PUT_TAG: u8 = 0;
/// Postcard's variant index of [`LogRecord::Remove`].
const REMOVE_TAG: u8 = 1;
/// Postcard's variant index of [`LogRecord::Clear`].
const CLEAR_TAG: u8 = 2;
/// Postcard's variant index of [`LogRecord::Txn`].
const TXN_TAG: u8 = 3;
/// Postcard's variant index of [`LogRecord::Floor`].
const FLOOR_TAG: u8 = 4;
/// Postcard's variant index of [`Op::Put`].
const OP_PUT_TAG: u8 = 0;
/// Postcard's variant index of [`Op::Remove`].
const OP_REMOVE_TAG: u8 = 1;

/// Appends a [`LogRecord::Clear`].
pub(crate) fn clear(out: &mut Vec<u8>, version: u64) {
    out.push(CLEAR_TAG);
    put_varint(out, version);
}

/// Appends a [`LogRecord::Txn`] of `ops`, all the iterator yields.
pub(crate) fn txn<'a>(out: &mut Vec<u8>, ops: impl ExactSizeIterator<Item = Op<'a>>) {
    out.push(TXN_TAG);
    put_varint(out, ops.len() as u64);
    for op in ops {
        match op {
            Op::Put(p) => {
                out.push(OP_PUT_TAG);
                p.encode_fields(out);
            }
            Op::Remove(r) => {
                out.push(OP_REMOVE_TAG);
                r.encode_fields(out);
            }
        }
    }
}

impl Put<'_> {
    /// The fields in postcard's encoding: two byte strings, a varint, an optional varint.
    fn encode_fields(&self, out: &mut Vec<u8>) {
        put_bytes(out, self.key);
        put_bytes(out, self.value);
        finish_put(out, self.version, self.expires_at);
    }
}

impl Remove<'_> {
    /// The fields in postcard's encoding: a byte string and a varint.
    fn encode_fields(&self, out: &mut Vec<u8>) {
        put_bytes(out, self.key);
        finish_remove(out, self.version);
    }
}

/// Starts a [`LogRecord::Put`] in the empty `out`: the tag, then the key and the value as
/// byte strings, each written by its codec straight into `out` (no copy through a buffer of
/// its own). [`finish_put`] adds the rest; the whole is what [`LogRecord::encode`] writes.
///
/// # Errors
///
/// Whatever a codec returns; `out` then holds a partial record, which the caller discards.
pub(crate) fn begin_put(
    out: &mut Vec<u8>,
    key: impl FnOnce(&mut Vec<u8>) -> crate::Result<()>,
    value: impl FnOnce(&mut Vec<u8>) -> crate::Result<()>,
) -> crate::Result<()> {
    out.push(PUT_TAG);
    put_encoded(out, key)?;
    put_encoded(out, value)
}

/// Ends a record started by [`begin_put`].
pub(crate) fn finish_put(out: &mut Vec<u8>, version: u64, expires_at: Option<u64>) {
    put_varint(out, version);
    match expires_at {
        None => out.push(0),
        Some(at) => {
            out.push(1);
            put_varint(out, at);
        }
    }
}

/// Starts a [`LogRecord::Remove`] in the empty `out`, as [`begin_put`] does.
///
/// # Errors
///
/// Whatever the codec returns.
pub(crate) fn begin_remove(
    out: &mut Vec<u8>,
    key: impl FnOnce(&mut Vec<u8>) -> crate::Result<()>,
) -> crate::Result<()> {
    out.push(REMOVE_TAG);
    put_encoded(out, key)
}

/// Ends a record started by [`begin_remove`].
pub(crate) fn finish_remove(out: &mut Vec<u8>, version: u64) {
    put_varint(out, version);
}

/// Appends a byte string that `encode` writes: one byte is set aside for its length, which
/// holds lengths below 128 (keys and small values); a longer one moves the bytes along to
/// make room for a longer varint.
fn put_encoded(
    out: &mut Vec<u8>,
    encode: impl FnOnce(&mut Vec<u8>) -> crate::Result<()>,
) -> crate::Result<()> {
    let at = out.len();
    out.push(0);
    encode(out)?;
    // A codec must only append (see `Codec::encode`); one that shortened the buffer has
    // destroyed the record's head, which must not reach the log.
    if out.len() <= at {
        return Err(crate::Error::Codec(
            "the codec removed bytes it was given instead of appending".into(),
        ));
    }
    let len = (out.len() - at - 1) as u64;
    if len < 0x80 {
        out[at] = len as u8;
    } else {
        let mut prefix = Vec::with_capacity(10);
        put_varint(&mut prefix, len);
        out.splice(at..=at, prefix);
    }
    Ok(())
}

/// Postcard's unsigned varint: 7 bits per byte, least significant first, high bit = more.
fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        // Truncation intended: the low 7 bits, with the continuation bit set.
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A postcard byte string: its length as a varint, then the bytes.
fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
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

    /// A codec that clears the buffer it should append to is refused, not logged: the
    /// record's head (its tag and key) would be gone.
    #[test]
    fn a_codec_that_clears_its_buffer_is_an_error() {
        let mut out = Vec::new();
        let result = begin_put(
            &mut out,
            |o| {
                o.extend_from_slice(b"key");
                Ok(())
            },
            |o| {
                o.clear();
                o.extend_from_slice(b"v");
                Ok(())
            },
        );
        assert!(matches!(result, Err(crate::Error::Codec(_))), "{result:?}");
    }

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
            rec.encode(&mut out);
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

    /// Numbers whose varints take every length from 1 to 10 bytes alike (uniform `u64`s
    /// nearly all take 9 or 10).
    fn varint_sized() -> impl proptest::strategy::Strategy<Value = u64> {
        use proptest::strategy::Strategy;
        (0u32..64, proptest::num::u64::ANY).prop_map(|(bits, x)| x >> bits)
    }

    proptest::proptest! {
        /// The hand-written encoding of every record is exactly serde's and postcard's, so
        /// logs written before and after it read alike.
        #[test]
        fn hand_written_encoding_matches_postcard(
            key in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
            value in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
            version in varint_sized(),
            expires_at in proptest::option::of(varint_sized()),
        ) {
            let put = Put { key: &key, value: &value, version, expires_at };
            let remove = Remove { key: &value, version: version / 3 };
            let recs = [
                LogRecord::Put(put.clone()),
                LogRecord::Remove(remove.clone()),
                LogRecord::Clear { version },
                LogRecord::Floor { next_version: version },
                LogRecord::Txn(vec![]),
                LogRecord::Txn(vec![Op::Remove(remove.clone()), Op::Put(put.clone())]),
                LogRecord::Txn(vec![Op::Put(put); (version % 200) as usize]),
            ];
            // The in-place form writes the same bytes, whatever the lengths.
            fn copy(b: &[u8]) -> impl FnOnce(&mut Vec<u8>) -> crate::Result<()> + '_ {
                move |out| {
                    out.extend_from_slice(b);
                    Ok(())
                }
            }
            let mut in_place = Vec::new();
            begin_put(&mut in_place, copy(&key), copy(&value)).unwrap();
            finish_put(&mut in_place, version, expires_at);
            proptest::prop_assert_eq!(&in_place, &postcard::to_stdvec(&recs[0]).unwrap());
            let mut in_place = Vec::new();
            begin_remove(&mut in_place, copy(&key)).unwrap();
            finish_remove(&mut in_place, version);
            let key_remove = LogRecord::Remove(Remove { key: &key, version });
            proptest::prop_assert_eq!(&in_place, &postcard::to_stdvec(&key_remove).unwrap());
            for rec in &recs {
                let mut fast = vec![9];
                rec.encode(&mut fast);
                let serde = postcard::to_stdvec(rec).unwrap();
                proptest::prop_assert_eq!(&fast[1..], &serde[..]);
                proptest::prop_assert_eq!(&LogRecord::decode(&fast[1..]).unwrap(), rec);
            }
        }
    }
}
