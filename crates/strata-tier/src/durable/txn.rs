//! Optimistic multi-key transactions over a [`DurableCache`].

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::record::{self, Op, Put, Remove};
use super::{wal_err, DurableCache, Inner, Stored};
use crate::{Error, ExpiresAt, Result};
use strata_wal::SyncPolicy;

/// A value read by a transaction, kept so that a second read of the key repeats the first.
struct Read<V> {
    value: Option<V>,
    version: u64,
}

/// A buffered write, with its key and value already encoded (so that an encoding error
/// reaches the closure at once, and commit does no fallible encoding under its locks).
enum Write<V> {
    Put { value: V, key_bytes: Vec<u8>, value_bytes: Vec<u8>, expires_at: Option<ExpiresAt> },
    Remove { key_bytes: Vec<u8> },
}

/// The view a transaction closure works through: reads record versions, writes are buffered
/// until commit; see [`DurableCache::transaction`].
pub struct Transaction<'a, K, V> {
    inner: &'a Inner<K, V>,
    reads: HashMap<K, Read<V>>,
    writes: HashMap<K, Write<V>>,
    /// Set when a read saw that an earlier read is no longer current: this attempt cannot
    /// commit, and is rerun whatever the closure returns.
    doomed: bool,
    attempt: u32,
}

impl<K, V> fmt::Debug for Transaction<'_, K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transaction")
            .field("reads", &self.reads.len())
            .field("writes", &self.writes.len())
            .field("attempt", &self.attempt)
            .finish()
    }
}

impl<'a, K, V> Transaction<'a, K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    fn new(inner: &'a Inner<K, V>, attempt: u32) -> Self {
        Transaction { inner, reads: HashMap::new(), writes: HashMap::new(), doomed: false, attempt }
    }

    /// Which attempt this is (1 for the first run of the closure).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    fn current(&self, key: &K, now: SystemTime) -> Option<Stored<V>> {
        self.inner.cache.peek(key).filter(|s| s.is_live(now))
    }

    /// The value of `key` as this transaction sees it: its own buffered write if any, else the
    /// committed value (read once; later reads of the key repeat it).
    ///
    /// # Errors
    ///
    /// [`Error::Conflict`] if a concurrent commit changed a key this transaction read before:
    /// return it (with `?`); the attempt is rerun either way.
    pub fn get(&mut self, key: &K) -> Result<Option<V>> {
        if let Some(w) = self.writes.get(key) {
            return Ok(match w {
                Write::Put { value, .. } => Some(value.clone()),
                Write::Remove { .. } => None,
            });
        }
        if let Some(r) = self.reads.get(key) {
            return Ok(r.value.clone());
        }
        let now = self.inner.clock.wall();
        let stored = self.current(key, now);
        let read = match stored {
            Some(s) => Read { version: s.version(), value: Some(s.value) },
            None => Read { value: None, version: 0 },
        };
        // Opacity: if every earlier read is still current now, then (versions never repeat)
        // each held its value from its read until now, so all reads so far, this one
        // included, are one consistent state of the cache.
        if !self.reads.is_empty() {
            let stale = self
                .reads
                .iter()
                .any(|(k, r)| self.current(k, now).map_or(0, |s| s.version()) != r.version);
            if stale {
                self.doomed = true;
                return Err(Error::Conflict { attempts: self.attempt });
            }
        }
        let value = read.value.clone();
        self.reads.insert(key.clone(), read);
        Ok(value)
    }

    /// Buffers a write of `value` under `key` (with the cache-wide settings: no expiry).
    ///
    /// # Errors
    ///
    /// [`Error::Codec`] or [`Error::TooLarge`] if the key or value cannot be encoded; the
    /// write is then not buffered.
    pub fn insert(&mut self, key: K, value: V) -> Result<()> {
        self.buffer_put(key, value, None)
    }

    /// Buffers a write with a time to live (measured from now, stored as an absolute
    /// wall-clock expiry). A zero TTL buffers a removal.
    ///
    /// # Errors
    ///
    /// As [`insert`](Self::insert).
    pub fn insert_with_ttl(&mut self, key: K, value: V, ttl: Duration) -> Result<()> {
        if ttl.is_zero() {
            return self.remove(&key);
        }
        let at = ExpiresAt::after(self.inner.clock.wall(), ttl);
        self.buffer_put(key, value, Some(at))
    }

    /// Buffers a removal of `key`.
    ///
    /// # Errors
    ///
    /// [`Error::Codec`] or [`Error::TooLarge`] if the key cannot be encoded.
    pub fn remove(&mut self, key: &K) -> Result<()> {
        let mut key_bytes = Vec::new();
        self.inner.keys.encode(key, &mut key_bytes)?;
        self.writes.insert(key.clone(), Write::Remove { key_bytes });
        Ok(())
    }

    fn buffer_put(&mut self, key: K, value: V, expires_at: Option<ExpiresAt>) -> Result<()> {
        let mut key_bytes = Vec::new();
        self.inner.keys.encode(&key, &mut key_bytes)?;
        let mut value_bytes = Vec::new();
        self.inner.values.encode(&value, &mut value_bytes)?;
        self.writes.insert(key, Write::Put { value, key_bytes, value_bytes, expires_at });
        Ok(())
    }

    /// Validates and applies under the locks of every key read or written. `Ok(Some(seq))`:
    /// committed as log record `seq` (0 for a read-only transaction, which logs nothing);
    /// `Ok(None)`: a read was stale, nothing applied.
    fn commit(self) -> Result<Option<u64>> {
        let inner = self.inner;
        if self.writes.is_empty() {
            // Every read was validated against all earlier ones when it was made, so a
            // read-only transaction already saw one consistent state. It may have seen a write
            // whose fsync is still under way; waiting for what is appended so far keeps a
            // read-only transaction from acting on data a crash could take back.
            return Ok(Some(inner.wal.next_seq().saturating_sub(1)));
        }
        let keys =
            self.reads.keys().chain(self.writes.keys().filter(|k| !self.reads.contains_key(k)));
        let now = inner.clock.wall();
        let gate = inner.gate.read();
        let Transaction { reads, writes, .. } = &self;
        let out = inner.cache.atomically(keys, |a| -> Result<Option<u64>> {
            for (key, read) in reads {
                let current = a.get(key)?.filter(|s| s.is_live(now)).map_or(0, |s| s.version());
                if current != read.version {
                    return Ok(None);
                }
            }
            // The record is written under the log's lock, where its versions are taken; the
            // keys and values in it were encoded when the transaction wrote them. The buffer
            // is sized here, so that writing it there is copies, never a reallocation: each
            // op adds at most 32 bytes to its key and value (a tag, two length varints of 5
            // bytes, a version of 10 and an expiry of 11), the record 11 (a tag, the count).
            let bytes: usize = writes
                .values()
                .map(|w| match w {
                    Write::Put { key_bytes, value_bytes, .. } => {
                        key_bytes.len() + value_bytes.len()
                    }
                    Write::Remove { key_bytes } => key_bytes.len(),
                })
                .sum();
            let mut buf = Vec::with_capacity(bytes + 32 * writes.len() + 11);
            let (seq, base) = inner.append(&mut buf, writes.len() as u64, |buf, base| {
                let ops = writes.values().enumerate().map(|(i, w)| match w {
                    Write::Put { key_bytes, value_bytes, expires_at, .. } => Op::Put(Put {
                        key: key_bytes,
                        value: value_bytes,
                        version: base + i as u64,
                        expires_at: expires_at.map(|e| e.0),
                    }),
                    Write::Remove { key_bytes } => {
                        Op::Remove(Remove { key: key_bytes, version: base + i as u64 })
                    }
                });
                record::txn(buf, ops);
            })?;
            // The same iteration order as above, so each write gets the version it was
            // logged with.
            for ((key, w), version) in writes.iter().zip(base..) {
                match w {
                    Write::Put { value, expires_at, .. } => {
                        inner.apply_put(
                            a,
                            key.clone(),
                            value.clone(),
                            version,
                            *expires_at,
                            now,
                        )?;
                    }
                    Write::Remove { .. } => drop(a.remove(key)?),
                }
            }
            Ok(Some(seq))
        });
        drop(gate);
        out
    }
}

/// Gives way to the committer that won, a little longer after each failed attempt (bounded
/// at about a millisecond).
fn backoff(attempt: u32) {
    if attempt < 4 {
        std::thread::yield_now();
    } else {
        std::thread::sleep(Duration::from_micros(u64::from(attempt.min(32)) * 32));
    }
}

impl<K, V> DurableCache<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// Runs `f` as a serializable, atomic, durable transaction; see the
    /// [module docs](super#transactions).
    ///
    /// `f` may run several times (it is rerun after a conflict), so it should have no side
    /// effects outside the transaction. When it returns `Ok`, its writes are committed as one
    /// log record and `transaction` returns once the record is as durable as the sync policy
    /// promises. When it returns `Err`, nothing is applied and the error is returned. A panic
    /// in `f` propagates with nothing applied.
    ///
    /// # Errors
    ///
    /// `f`'s own error; [`Error::Conflict`] after [`DurableOptions::max_attempts`] conflicting
    /// runs; [`Error::Closed`]; [`Error::Wal`] if the log failed.
    ///
    /// [`DurableOptions::max_attempts`]: super::DurableOptions::max_attempts
    pub fn transaction<R, E>(
        &self,
        mut f: impl FnMut(&mut Transaction<'_, K, V>) -> std::result::Result<R, E>,
    ) -> std::result::Result<R, E>
    where
        E: From<Error>,
    {
        let inner = &*self.inner;
        for attempt in 1..=inner.max_attempts {
            inner.check_open()?;
            let mut tx = Transaction::new(inner, attempt);
            let out = f(&mut tx);
            if tx.doomed {
                backoff(attempt);
                continue;
            }
            let value = out?;
            match tx.commit()? {
                Some(seq) => {
                    inner.wait(seq)?;
                    return Ok(value);
                }
                None => backoff(attempt),
            }
        }
        Err(Error::Conflict { attempts: inner.max_attempts }.into())
    }

    /// The async form of [`transaction`](Self::transaction): `f` is an async closure. The
    /// commit itself is short and never awaits; the wait for the fsync runs on tokio's
    /// blocking pool (inline when there is no runtime), so it never blocks the executor.
    ///
    /// # Errors
    ///
    /// As [`transaction`](Self::transaction).
    pub async fn transaction_async<R, E>(
        &self,
        mut f: impl AsyncFnMut(&mut Transaction<'_, K, V>) -> std::result::Result<R, E>,
    ) -> std::result::Result<R, E>
    where
        E: From<Error>,
    {
        let inner = &*self.inner;
        for attempt in 1..=inner.max_attempts {
            inner.check_open()?;
            let mut tx = Transaction::new(inner, attempt);
            let out = f(&mut tx).await;
            if tx.doomed {
                tokio::task::yield_now().await;
                continue;
            }
            let value = out?;
            match tx.commit()? {
                Some(seq) => {
                    self.wait_async(seq).await?;
                    return Ok(value);
                }
                None => tokio::task::yield_now().await,
            }
        }
        Err(Error::Conflict { attempts: inner.max_attempts }.into())
    }

    /// Waits for `seq` as the policy requires, off the async executor.
    async fn wait_async(&self, seq: u64) -> Result<()> {
        if self.inner.policy != SyncPolicy::Always || self.inner.wal.durable_seq() >= seq {
            return Ok(());
        }
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                let inner = Arc::clone(&self.inner);
                handle
                    .spawn_blocking(move || inner.wal.wait_durable(seq).map_err(wal_err))
                    .await
                    .map_err(|e| Error::Unavailable {
                        tier: "durable".into(),
                        reason: e.to_string(),
                    })?
            }
            Err(_) => self.inner.wait(seq),
        }
    }
}
