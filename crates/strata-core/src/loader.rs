//! Single-flight loading: of all the callers that miss on one key at the same time, one runs
//! its loader and the others wait for its result.
//!
//! # Protocol
//!
//! - The in-flight table maps `(key, kind)` to a `watch` receiver. `kind` is the `TypeId` of
//!   the loader's error type, so loaders with different error types never share a result.
//! - A caller that finds no entry inserts one and becomes the *leader*, holding the sender.
//!   Everyone else clones the receiver and waits.
//! - The leader writes its value to the cache first, then removes the table entry, then
//!   sends. A caller arriving in between finds the value in the cache. A caller that
//!   becomes leader looks in the cache once more before loading, because its first miss
//!   may predate the previous leader's insert.
//! - If the leader's future is dropped or its loader panics, a guard removes the entry and
//!   drops the sender without a value; waiters see the channel close and start over, and
//!   one of them leads with its own loader. No key is ever wedged.
//!
//! # Observability
//!
//! Each leader's loader call (and each background refresh) runs inside a `tracing` span,
//! `strata.load` or `strata.refresh`, carrying the cache's name; followers and plain `get`s
//! create no span. A [`LoadTimer`] counts the call as a success or failure and records its
//! duration when the call ends; a leader that is cancelled or panics counts as a failure.

use crate::cache::{BoxFuture, Cache};
use parking_lot::Mutex;
use std::any::{Any, TypeId};
use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::future::Future;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;
use strata_metrics::CacheMetrics;
use tokio::sync::watch;
use tracing::Instrument;

type Slot<V, E> = Option<Result<V, Arc<E>>>;
type Table<K> = HashMap<(K, TypeId), Box<dyn Any + Send + Sync>>;

/// The receiver of the load of `id` in flight in `t`, if there is one.
fn loading_receiver<'t, K: Hash + Eq, V: 'static, E: 'static>(
    t: &'t Table<K>,
    id: &(K, TypeId),
) -> Option<&'t watch::Receiver<Slot<V, E>>> {
    t.get(id).and_then(|b| b.downcast_ref())
}

/// Marks an in-flight background refresh (no one waits on its result).
struct RefreshKind;

pub(crate) struct Inflight<K> {
    tables: Box<[Mutex<Table<K>>]>,
}

impl<K> Inflight<K> {
    pub(crate) fn new(shards: usize) -> Self {
        Inflight { tables: (0..shards.max(1)).map(|_| Mutex::new(HashMap::new())).collect() }
    }

    fn table(&self, hash: u64) -> &Mutex<Table<K>> {
        &self.tables[(hash >> 32) as usize % self.tables.len()]
    }
}

/// Times one loader call and records it in the cache's metrics, whatever way it ends: a
/// timer dropped without [`finish`](Self::finish) (the leader's future dropped, or the loader
/// panicked) counts as a failure.
struct LoadTimer<'a> {
    stats: Option<&'a CacheMetrics>,
    started: Instant,
}

impl<'a> LoadTimer<'a> {
    fn start(stats: Option<&'a CacheMetrics>) -> Self {
        LoadTimer { stats, started: Instant::now() }
    }

    /// Records the call's outcome now and disarms the drop-time failure.
    fn finish(mut self, ok: bool) {
        if let Some(m) = self.stats.take() {
            m.record_load(ok, self.started.elapsed());
        }
    }
}

impl Drop for LoadTimer<'_> {
    fn drop(&mut self) {
        if let Some(m) = self.stats.take() {
            m.record_load(false, self.started.elapsed());
        }
    }
}

enum Role<V, E> {
    Leader(watch::Sender<Slot<V, E>>),
    Follower(watch::Receiver<Slot<V, E>>),
}

/// Removes the leader's table entry however the leader ends (value, error, panic, drop).
struct LeaderGuard<'a, K: Hash + Eq> {
    table: &'a Mutex<Table<K>>,
    key: Option<(K, TypeId)>,
}

impl<K: Hash + Eq> LeaderGuard<'_, K> {
    fn release(&mut self) {
        if let Some(k) = self.key.take() {
            self.table.lock().remove(&k);
        }
    }
}

impl<K: Hash + Eq> Drop for LeaderGuard<'_, K> {
    fn drop(&mut self) {
        self.release();
    }
}

impl<K, V, S> Cache<K, V, S>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Clone + Send + Sync + 'static,
{
    /// Returns the value for `key`, loading it with `init` on a miss. Concurrent misses on
    /// one key run one `init` between them; the others wait for its value.
    ///
    /// If the caller that is loading is cancelled (its future dropped) or its loader
    /// panics, one of the waiters takes over with its own `init`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), strata_core::Error> {
    /// use strata_core::Cache;
    ///
    /// let cache: Cache<u32, String> = Cache::builder().max_capacity(100).build()?;
    /// let v = cache.get_with(7, async { "seven".to_string() }).await;
    /// assert_eq!(v, "seven");
    /// // Now cached: this loader does not run.
    /// let v = cache.get_with(7, async { unreachable!() }).await;
    /// assert_eq!(v, "seven");
    /// # Ok(()) }
    /// ```
    pub async fn get_with(&self, key: K, init: impl Future<Output = V>) -> V {
        match self.try_get_with::<_, Infallible>(key, async { Ok(init.await) }).await {
            Ok(v) => v,
            Err(e) => match *e {},
        }
    }

    /// Like [`get_with`](Self::get_with) for a loader that can fail. An error is not cached:
    /// it is returned to the caller that loaded and to every caller waiting on that load,
    /// and the next call loads again.
    pub async fn try_get_with<F, E>(&self, key: K, init: F) -> Result<V, Arc<E>>
    where
        F: Future<Output = Result<V, E>>,
        E: Send + Sync + 'static,
    {
        let mut init = Some(init);
        let hash = self.hash(&key);
        // Only the first lookup is a read in the statistics' sense (one call, one hit or one
        // miss); the second looks below and the retries after a vanished leader use `peek`.
        let mut lookup: fn(&Self, &K) -> Option<V> = |c, k| c.get(k);
        loop {
            if let Some(v) = lookup(self, &key) {
                return Ok(v);
            }
            lookup = |c, k| c.peek(k);
            let table = self.inner.inflight.table(hash);
            let role = {
                let mut t = table.lock();
                let id = (key.clone(), TypeId::of::<E>());
                match loading_receiver::<K, V, E>(&t, &id) {
                    Some(rx) => Role::Follower(rx.clone()),
                    None => {
                        let (tx, rx) = watch::channel(None);
                        t.insert(id, Box::new(rx));
                        Role::Leader(tx)
                    }
                }
            };
            match role {
                Role::Follower(mut rx) => {
                    if let Some(result) = wait(&mut rx).await {
                        return result;
                    }
                    // The leader went away without a result: start over.
                }
                Role::Leader(tx) => {
                    let mut guard =
                        LeaderGuard { table, key: Some((key.clone(), TypeId::of::<E>())) };
                    // We may have missed just before the previous leader inserted its value
                    // and left the table; it inserts before it leaves, so look again.
                    if let Some(v) = self.peek(&key) {
                        guard.release();
                        let _ = tx.send(Some(Ok(v.clone())));
                        return Ok(v);
                    }
                    let Some(init) = init.take() else {
                        // Our own loader was already used up by an earlier, cancelled turn as
                        // leader; that cannot happen because a cancelled turn cancels us.
                        unreachable!("a caller leads at most once")
                    };
                    let span = tracing::debug_span!(
                        "strata.load",
                        cache = %self.inner.name,
                        ok = tracing::field::Empty
                    );
                    let timer = LoadTimer::start(self.inner.stats.as_ref());
                    let result = init.instrument(span.clone()).await;
                    span.record("ok", result.is_ok());
                    timer.finish(result.is_ok());
                    let result = match result {
                        Ok(v) => {
                            self.insert(key.clone(), v.clone());
                            Ok(v)
                        }
                        Err(e) => Err(Arc::new(e)),
                    };
                    guard.release();
                    // Nobody listening is fine: every waiter may have been cancelled.
                    let _ = tx.send(Some(result.clone()));
                    return result;
                }
            }
        }
    }

    /// Returns the values of all `keys`, loading every missing key with **one** call of
    /// `load`, which receives the keys to load and returns the pairs it found. The result
    /// holds every key that was cached, that another caller's load produced, or that `load`
    /// returned; keys `load` does not return are absent from it.
    ///
    /// Keys another caller is already loading are waited for first, and only then is `load`
    /// called, with the keys still missing: a key whose other load ended without a value
    /// (that caller was cancelled, its loader panicked, or its own batch loader skipped the
    /// key) is loaded by this call's `load` rather than dropped. The cost is latency: when
    /// some requested key is being loaded elsewhere, the keys nobody is loading are loaded
    /// only after that other load ends, not alongside it, and until then they are not marked
    /// as being loaded, so a concurrent caller missing on one of them loads it itself. This
    /// call marks its keys only once it has waited: a batch that waited while holding keys
    /// of its own could wait forever for a batch waiting for it. A key that another caller
    /// starts loading in the instant between the wait and the marking is loaded by both;
    /// the other caller's value wins if it gets one.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), strata_core::Error> {
    /// use strata_core::Cache;
    ///
    /// let cache: Cache<u32, u32> = Cache::builder().max_capacity(100).build()?;
    /// cache.insert(1, 10);
    /// let got = cache
    ///     .get_all_with([1, 2, 3], |missing| async move {
    ///         assert_eq!(missing, vec![2, 3]);
    ///         missing.into_iter().map(|k| (k, k * 10)).collect::<Vec<_>>()
    ///     })
    ///     .await;
    /// assert_eq!(got.len(), 3);
    /// assert_eq!(got[&3], 30);
    /// # Ok(()) }
    /// ```
    pub async fn get_all_with<I, F, Fut>(&self, keys: I, load: F) -> HashMap<K, V>
    where
        I: IntoIterator<Item = K>,
        F: FnOnce(Vec<K>) -> Fut,
        Fut: Future<Output = Vec<(K, V)>>,
    {
        let id = TypeId::of::<Infallible>();
        let receiver = |key: &K| {
            let t = self.inner.inflight.table(self.hash(key)).lock();
            loading_receiver::<K, V, Infallible>(&t, &(key.clone(), id)).cloned()
        };
        let mut found = HashMap::new();
        // The distinct keys the cache lacks, in the order they were asked for.
        let mut missing = Vec::new();
        let mut seen = HashSet::new();
        for key in keys {
            if found.contains_key(&key) || seen.contains(&key) {
                continue;
            }
            match self.get(&key) {
                Some(v) => {
                    found.insert(key, v);
                }
                None => {
                    seen.insert(key.clone());
                    missing.push(key);
                }
            }
        }
        // First wait for the loads other callers have in flight, holding no key of our own.
        let in_flight: Vec<_> = missing.into_iter().map(|k| (receiver(&k), k)).collect();
        let mut unloaded = Vec::new();
        for (rx, key) in in_flight {
            if let Some(mut rx) = rx {
                match wait(&mut rx).await {
                    Some(Ok(v)) => {
                        found.insert(key, v);
                        continue;
                    }
                    Some(Err(e)) => match *e {},
                    // That load ended without a value: ours loads the key (below).
                    None => {}
                }
            }
            unloaded.push(key);
        }
        // Then lead the keys still missing; from here on this call waits for nobody until
        // it has released them.
        let mut asked = Vec::new();
        let mut guards = Vec::new();
        let mut senders: HashMap<K, watch::Sender<Slot<V, Infallible>>> = HashMap::new();
        let mut raced = Vec::new();
        for key in unloaded {
            let table = self.inner.inflight.table(self.hash(&key));
            let mut t = table.lock();
            if let Some(rx) = loading_receiver::<K, V, Infallible>(&t, &(key.clone(), id)) {
                // Another caller started loading it since we looked: load it too, and
                // prefer that caller's value if it gets one (below).
                raced.push((key.clone(), rx.clone()));
                asked.push(key);
                continue;
            }
            let (tx, rx) = watch::channel(None);
            t.insert((key.clone(), id), Box::new(rx));
            drop(t);
            let mut guard = LeaderGuard { table, key: Some((key.clone(), id)) };
            // A previous leader may have inserted its value since our miss, or while we
            // waited for the others.
            if let Some(v) = self.peek(&key) {
                guard.release();
                let _ = tx.send(Some(Ok(v.clone())));
                found.insert(key, v);
                continue;
            }
            guards.push(guard);
            senders.insert(key.clone(), tx);
            asked.push(key);
        }
        if asked.is_empty() {
            return found;
        }
        let span = tracing::debug_span!(
            "strata.load",
            cache = %self.inner.name,
            keys = asked.len(),
            found = tracing::field::Empty
        );
        let timer = LoadTimer::start(self.inner.stats.as_ref());
        // One batch call is one load: keys it does not return are absent, not failed.
        let loaded = load(asked).instrument(span.clone()).await;
        span.record("found", loaded.len());
        timer.finish(true);
        let mut for_raced = HashMap::new();
        for (k, v) in loaded {
            if senders.contains_key(&k) {
                self.insert(k.clone(), v.clone());
            } else if raced.iter().any(|(r, _)| *r == k) {
                for_raced.insert(k, v);
                continue;
            }
            found.insert(k, v);
        }
        // Release every key we led, then publish; keys the loader skipped close their
        // channel without a value, so their waiters start over with their own loaders.
        for mut g in guards {
            g.release();
        }
        for (k, tx) in senders {
            if let Some(v) = found.get(&k) {
                let _ = tx.send(Some(Ok(v.clone())));
            }
        }
        // We lead nothing now, so waiting for the racing loads cannot close a cycle.
        for (key, mut rx) in raced {
            let v = match wait(&mut rx).await {
                Some(Ok(v)) => Some(v),
                Some(Err(e)) => match *e {},
                // That load ended without a value: the value is cached if someone wrote it
                // meanwhile, else ours is, as a leader's would be.
                None => self.peek(&key).or_else(|| {
                    let v = for_raced.remove(&key)?;
                    self.insert(key.clone(), v.clone());
                    Some(v)
                }),
            };
            if let Some(v) = v {
                found.insert(key, v);
            }
        }
        found
    }

    /// Starts a background reload of `key` unless one is already running.
    pub(crate) fn start_refresh(&self, key: K, hash: u64, gen: u32) {
        let Some(reloader) = self.inner.reloader.clone() else { return };
        let table = self.inner.inflight.table(hash);
        let id = (key.clone(), TypeId::of::<RefreshKind>());
        {
            let mut t = table.lock();
            if t.contains_key(&id) {
                return;
            }
            t.insert(id, Box::new(()));
        }
        struct Done<K: Hash + Eq + Clone + Send + Sync + 'static, V, S>(Cache<K, V, S>, K, u64);
        impl<K: Hash + Eq + Clone + Send + Sync + 'static, V, S> Drop for Done<K, V, S> {
            fn drop(&mut self) {
                let table = self.0.inner.inflight.table(self.2);
                table.lock().remove(&(self.1.clone(), TypeId::of::<RefreshKind>()));
            }
        }
        let cache = self.clone();
        // The guard that clears the in-flight mark is made here and moved into the task, not
        // made by the task: a task dropped before its first poll (spawned on a runtime that
        // is shutting down, or on a thread that could not start) must clear it too, or the
        // key would never be refreshed again.
        let done = Done(cache.clone(), key.clone(), hash);
        let task: BoxFuture<()> = Box::pin(async move {
            let span = tracing::debug_span!(
                "strata.refresh",
                cache = %cache.inner.name,
                ok = tracing::field::Empty,
                written = tracing::field::Empty
            );
            // A reload is a loader call too: it is timed and counted with the loads, and
            // `None` (the reloader gave up) counts as a failure.
            let timer = LoadTimer::start(cache.inner.stats.as_ref());
            let reloaded = reloader(key.clone()).instrument(span.clone()).await;
            span.record("ok", reloaded.is_some());
            timer.finish(reloaded.is_some());
            if let Some(v) = reloaded {
                let written = cache.write_if_generation(key, hash, gen, v);
                span.record("written", written);
            }
            drop(done);
        });
        // A refresh that finds no thread (see `spawn`) is not counted: it did not happen.
        if spawn(task) {
            if let Some(s) = &self.inner.stats {
                s.refreshes.incr();
            }
        }
    }
}

/// Waits for the leader's result; `None` if it went away without one.
async fn wait<V: Clone, E>(rx: &mut watch::Receiver<Slot<V, E>>) -> Option<Result<V, Arc<E>>> {
    loop {
        if let Some(r) = rx.borrow_and_update().as_ref() {
            return Some(r.clone());
        }
        if rx.changed().await.is_err() {
            // Closed: a value sent just before closing is still visible.
            return rx.borrow().as_ref().cloned();
        }
    }
}

/// The most refresh threads alive at once in the process, when refreshes run without a
/// tokio runtime: a burst of stale keys (a cache filled at once, then read after the
/// interval) would otherwise start a thread per key. Past it a refresh is skipped, as Caffeine's
/// is when its executor rejects the task: the entry keeps its value and a read after the
/// interval tries again.
const MAX_REFRESH_THREADS: usize = 16;

/// Refresh threads alive now (see [`MAX_REFRESH_THREADS`]).
static REFRESH_THREADS: AtomicUsize = AtomicUsize::new(0);

/// Gives back a refresh thread's place when the thread ends, however it ends.
struct ThreadPlace;

impl Drop for ThreadPlace {
    fn drop(&mut self) {
        REFRESH_THREADS.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Runs a background task: on the current tokio runtime if there is one, else on a thread of
/// its own if fewer than [`MAX_REFRESH_THREADS`] are running. Returns whether it was started;
/// a task not started is dropped (its guards run).
fn spawn(task: BoxFuture<()>) -> bool {
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        handle.spawn(task);
        return true;
    }
    if REFRESH_THREADS.fetch_add(1, Ordering::AcqRel) >= MAX_REFRESH_THREADS {
        REFRESH_THREADS.fetch_sub(1, Ordering::AcqRel);
        return false;
    }
    let place = ThreadPlace;
    // If no thread can be started the closure, and with it the place and the task, is
    // dropped: the refresh is skipped and the next read past the interval tries again.
    std::thread::Builder::new()
        .name("strata-refresh".into())
        .spawn(move || {
            let _place = place;
            block_on(task);
        })
        .is_ok()
}

/// A minimal executor for one future on the current thread.
fn block_on<F: Future>(fut: F) -> F::Output {
    use std::task::{Context, Poll, Wake, Waker};
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}
