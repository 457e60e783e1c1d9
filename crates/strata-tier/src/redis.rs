//! The Redis tier: a [`Tier`] on a Redis server or a Redis Cluster, shared between processes.
//!
//! # Layout in Redis
//!
//! A key `k` is stored as the Redis string `<prefix>:k` (binary-safe, the key's bytes as
//! given). The value is a small header (a marker byte, a format version, the entry's absolute
//! expiry) followed by the value's bytes; the expiry is also handed to Redis as a `PX` TTL so
//! that Redis frees the memory, and a reader checks the stored expiry against its own clock so
//! that an entry is never served late even where Redis expires lazily. Bytes under the prefix
//! without the header, and values of another Redis type (a list, a hash), are reported as
//! [`Error::Corrupt`], never served.
//!
//! # Coherence between processes
//!
//! Each [`RedisTier`] has a random origin id. After every successful `put` or `remove` it
//! publishes `(origin, key)` on the channel `<prefix>:invalidate` (in the same pipeline as the
//! write, so it costs no extra round trip), and after `clear` it publishes "all". A background
//! task with its own pub/sub connection forwards notices from *other* origins through
//! [`Tier::invalidations`]. While that subscription is down, notices are lost, so the task
//! sends [`Invalidation::All`] when the connection is lost and again each time it is restored.
//! A receiver that lags behind the broadcast channel's capacity must treat
//! [`tokio::sync::broadcast::error::RecvError::Lagged`] as [`Invalidation::All`] too.
//!
//! Since a tier skips its own notices, one instance serves one
//! [`TieredCache`](crate::tiered::TieredCache) at a time: two caches over one instance would
//! not hear each other's writes, so the second one's builder refuses it with
//! [`Error::InvalidConfig`]. Build one `RedisTier` per cache, as separate processes would.
//!
//! # Failure and time
//!
//! Every call ends by `min(deadline, now + timeout)` with [`Error::Timeout`]; a failed command
//! is [`Error::Redis`], except a write refused with `OOM` (the server is at its `maxmemory`
//! under `noeviction`), which is [`Error::Refused`]: the server is healthy and still serves
//! reads. A single server is reached through [`redis::aio::ConnectionManager`]s,
//! which reconnect in the background with exponential backoff after a failure, so calls made
//! while the server is down fail fast and calls after it is back succeed. A cluster is
//! reached through [`redis::cluster_async::ClusterConnection`]s, which follow slot moves and
//! reconnect to nodes. [`RedisTierBuilder::build`] connects eagerly: a server that cannot be
//! reached within the connect timeout is an [`Error::Unavailable`] naming the cause (refused,
//! bad password, TLS failure), so a misconfiguration shows at start-up, not at the first call.
//!
//! # AUTH and TLS
//!
//! Credentials come from the URL (`redis://user:password@host:port/`) or from
//! [`RedisTierBuilder::username`] and [`RedisTierBuilder::password`], which override it; they
//! are never printed (`Debug` and error messages leave URLs out). A `rediss://` URL connects
//! over TLS (rustls): by default the server's certificate is checked against the public web
//! roots, or against a private CA given with [`RedisTierBuilder::tls_root_certificate`];
//! [`RedisTierBuilder::tls_client_certificate`] adds a client certificate for mutual TLS.
//!
//! # `clear`
//!
//! `clear` removes only keys under the prefix: it walks them with `SCAN MATCH <prefix>:*` in
//! batches and removes each batch with `UNLINK` (freed in the background by Redis). In a
//! cluster the walk runs on every master in turn, since `SCAN` is per node; keys are not
//! hash-tagged, so one tier's keys spread over every slot like any others. Each round trip is
//! bounded by the per-call timeout and the whole walk by the caller's deadline. Keys written
//! while `clear` runs may survive it, as with any `SCAN`.

mod encoding;
mod subscriber;

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo, SingleNodeRoutingInfo};
use redis::{Cmd, FromRedisValue, IntoConnectionInfo, Pipeline, RedisResult, Value};
use tokio::sync::broadcast;
use tokio::task::AbortHandle;

use self::encoding::{decode_entry, encode_entry, encode_notice, Notice, Origin, HEADER_LEN};
use self::subscriber::Subscriber;
use crate::{Error, Invalidation, Result, Tier, TierEntry, TierFuture};

/// The most connections a tier may open for commands.
const MAX_POOL_SIZE: usize = 64;
/// The longest per-call timeout, connect timeout or reconnect delay a builder accepts.
const MAX_DURATION: Duration = Duration::from_secs(3600);
/// An upper bound on `SCAN` rounds in one `clear`, on top of the deadline: at the default
/// batch of 512 keys this is half a billion keys per node.
const MAX_SCAN_ROUNDS: usize = 1 << 20;
/// The longest TTL handed to Redis as `PX` (about 100 years); a longer one is not handed over
/// at all, since Redis rejects deadlines past its clock's range, and the expiry stored in the
/// value still ends the entry for readers.
const MAX_PX_MILLIS: u64 = 100 * 365 * 24 * 3600 * 1000;

/// Builds a [`RedisTier`]; start from [`RedisTier::builder`] or [`RedisTier::cluster_builder`].
#[derive(Clone)]
pub struct RedisTierBuilder {
    nodes: Vec<String>,
    cluster: bool,
    prefix: String,
    name: String,
    timeout: Duration,
    connect_timeout: Duration,
    max_reconnect_delay: Duration,
    liveness_interval: Duration,
    username: Option<String>,
    password: Option<String>,
    pool_size: usize,
    invalidation_capacity: usize,
    scan_batch: usize,
    max_value_len: usize,
    tls_root_cert: Option<Vec<u8>>,
    tls_client: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for RedisTierBuilder {
    // URLs and the password may carry credentials: never print them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTierBuilder")
            .field("nodes", &self.nodes.len())
            .field("cluster", &self.cluster)
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("pool_size", &self.pool_size)
            .finish_non_exhaustive()
    }
}

impl RedisTierBuilder {
    fn new(nodes: Vec<String>, cluster: bool) -> Self {
        RedisTierBuilder {
            nodes,
            cluster,
            prefix: String::new(),
            name: "redis".to_string(),
            timeout: Duration::from_millis(500),
            connect_timeout: Duration::from_secs(2),
            max_reconnect_delay: Duration::from_secs(2),
            liveness_interval: Duration::from_secs(2),
            username: None,
            password: None,
            pool_size: 1,
            invalidation_capacity: 4096,
            scan_batch: 512,
            max_value_len: 64 << 20,
            tls_root_cert: None,
            tls_client: None,
        }
    }

    /// The namespace: keys are stored as `<prefix>:<key>`. Required and non-empty; tiers with
    /// different prefixes on one server never see each other's keys or notices. Prefixes must
    /// not nest: `clear` on prefix `app` would also remove the keys of a prefix `app:v2`,
    /// since those are `app:v2:<key>`, which lies under `app:`. In a cluster, a prefix with
    /// a hash tag (`{app}`) puts every key of the tier in one slot, on one master: multi-key
    /// commands then work on them, at the cost of spreading no load.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The tier's name in errors, logs and metrics (default `redis`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The longest one call may take, whatever its deadline (default 500 ms).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The longest a connection attempt may take, at build and on reconnect (default 2 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The longest delay between reconnect attempts (default 2 s); attempts back off
    /// exponentially up to it.
    pub fn max_reconnect_delay(mut self, delay: Duration) -> Self {
        self.max_reconnect_delay = delay;
        self
    }

    /// How often the invalidation subscription is checked with `PING` when no message
    /// arrives (default 2 s). A dead subscription is found within twice this.
    pub fn liveness_interval(mut self, interval: Duration) -> Self {
        self.liveness_interval = interval;
        self
    }

    /// The user to `AUTH` as (Redis 6 ACLs), overriding one given in the URL.
    pub fn username(mut self, username: impl Into<String>) -> Self {
        self.username = Some(username.into());
        self
    }

    /// The password to `AUTH` with, overriding one given in the URL.
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// How many connections carry commands, used in turn (default 1, at most 64). Each one is
    /// multiplexed: many calls share it, pipelined, so one is enough for most services; more
    /// spread the encoding work and the server's reads over several sockets.
    pub fn pool_size(mut self, size: usize) -> Self {
        self.pool_size = size;
        self
    }

    /// How many invalidations a slow receiver may fall behind before it sees
    /// [`broadcast::error::RecvError::Lagged`] (default 4096).
    pub fn invalidation_capacity(mut self, capacity: usize) -> Self {
        self.invalidation_capacity = capacity;
        self
    }

    /// How many keys one `SCAN` round of `clear` asks for and one `UNLINK` removes (default 512).
    pub fn scan_batch(mut self, batch: usize) -> Self {
        self.scan_batch = batch;
        self
    }

    /// The largest value `put` accepts, in bytes (default 64 MiB; Redis's own limit is 512 MiB).
    pub fn max_value_len(mut self, len: usize) -> Self {
        self.max_value_len = len;
        self
    }

    /// The CA certificate (PEM) that `rediss://` servers are checked against, instead of the
    /// public web roots: for a server whose certificate a private CA signed.
    pub fn tls_root_certificate(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls_root_cert = Some(pem.into());
        self
    }

    /// A client certificate and its private key (both PEM), for servers that require mutual
    /// TLS (`tls-auth-clients yes`).
    pub fn tls_client_certificate(
        mut self,
        cert_pem: impl Into<Vec<u8>>,
        key_pem: impl Into<Vec<u8>>,
    ) -> Self {
        self.tls_client = Some((cert_pem.into(), key_pem.into()));
        self
    }

    fn tls_certificates(&self) -> Option<redis::TlsCertificates> {
        if self.tls_root_cert.is_none() && self.tls_client.is_none() {
            return None;
        }
        Some(redis::TlsCertificates {
            client_tls: self.tls_client.as_ref().map(|(cert, key)| redis::ClientTlsConfig {
                client_cert: cert.clone(),
                client_key: key.clone(),
            }),
            root_cert: self.tls_root_cert.clone(),
        })
    }

    /// A client for node `info`, with this builder's TLS certificates if any.
    fn client(&self, info: redis::ConnectionInfo) -> Result<redis::Client> {
        let client = match self.tls_certificates() {
            Some(certs) => redis::Client::build_with_tls(info, certs),
            None => redis::Client::open(info),
        };
        client.map_err(|e| Error::InvalidConfig(format!("redis client: {e}")))
    }

    fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::InvalidConfig(msg));
        if self.nodes.is_empty() {
            return bad("the redis tier needs at least one node URL".into());
        }
        if !self.cluster && self.nodes.len() != 1 {
            return bad("a single-server redis tier takes exactly one URL".into());
        }
        if self.prefix.is_empty() {
            return bad("the redis tier needs a non-empty key prefix".into());
        }
        for (what, d) in [
            ("timeout", self.timeout),
            ("connect timeout", self.connect_timeout),
            ("max reconnect delay", self.max_reconnect_delay),
            ("liveness interval", self.liveness_interval),
        ] {
            if d.is_zero() || d > MAX_DURATION {
                return bad(format!("redis {what} must be between 1 ns and 1 h, not {d:?}"));
            }
        }
        if !(1..=MAX_POOL_SIZE).contains(&self.pool_size) {
            return bad(format!(
                "redis pool size must be 1 to {MAX_POOL_SIZE}, not {}",
                self.pool_size
            ));
        }
        if self.invalidation_capacity == 0 || self.scan_batch == 0 || self.max_value_len == 0 {
            return bad(
                "redis invalidation capacity, scan batch and max value length must be at least 1"
                    .into(),
            );
        }
        Ok(())
    }

    /// The connection info of node `i`, with explicit credentials applied. The URL itself is
    /// never put into an error message, since it may hold a password.
    fn node_info(&self, i: usize) -> Result<redis::ConnectionInfo> {
        let mut info = self.nodes[i].as_str().into_connection_info().map_err(|e| {
            Error::InvalidConfig(format!("redis node URL #{i} is not valid ({:?})", e.kind()))
        })?;
        if matches!(info.addr, redis::ConnectionAddr::Unix(_)) && self.cluster {
            return Err(Error::InvalidConfig(
                "a redis cluster is reached over TCP, not a unix socket".into(),
            ));
        }
        let tls = matches!(info.addr, redis::ConnectionAddr::TcpTls { .. });
        if !tls && (self.tls_root_cert.is_some() || self.tls_client.is_some()) {
            return Err(Error::InvalidConfig(format!(
                "redis node URL #{i}: TLS certificates were given but the URL is not rediss://"
            )));
        }
        if let Some(user) = &self.username {
            info.redis.username = Some(user.clone());
        }
        if let Some(password) = &self.password {
            info.redis.password = Some(password.clone());
        }
        Ok(info)
    }

    /// Connects, subscribes to the invalidation channel and starts the subscriber task.
    ///
    /// Must run inside a tokio runtime with the time driver. Each step (a probe connection,
    /// each pooled connection, the subscription) is bounded by the connect timeout.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for a missing prefix, bad URL or out-of-range setting, or a
    /// runtime without the time driver;
    /// [`Error::Unavailable`] when the server (or no cluster node) can be reached, the
    /// credentials are refused, or the subscription cannot be made within the connect timeout.
    pub async fn build(self) -> Result<RedisTier> {
        self.validate()?;
        // Every step below is bounded by a tokio timer, and the subscriber task started here
        // lives on this runtime: one without the time driver is refused now, not a panic.
        crate::rt::require_timers()?;
        let infos = (0..self.nodes.len()).map(|i| self.node_info(i)).collect::<Result<Vec<_>>>()?;
        let unavailable = |reason: String| Error::Unavailable { tier: self.name.clone(), reason };
        if infos.iter().any(|info| matches!(info.addr, redis::ConnectionAddr::TcpTls { .. })) {
            // rustls panics on the first handshake when it cannot pick a crypto provider (none
            // or several enabled by crate features). Installing ring as the process default
            // settles it; an error only means the application already installed one, which
            // rustls will then use.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let clients =
            infos.iter().map(|info| self.client(info.clone())).collect::<Result<Vec<_>>>()?;

        let conns = if self.cluster {
            self.connect_cluster(infos).await.map_err(unavailable)?
        } else {
            self.connect_single(&clients[0]).await.map_err(unavailable)?
        };

        let stats = Arc::new(Stats::default());
        let origin = Origin::random();
        let (sender, _) = broadcast::channel(self.invalidation_capacity);
        let channel = format!("{}:invalidate", self.prefix);
        let subscriber = Subscriber {
            clients,
            channel: channel.clone(),
            origin,
            sender: sender.clone(),
            stats: Arc::clone(&stats),
            connect_timeout: self.connect_timeout,
            liveness_interval: self.liveness_interval,
            max_reconnect_delay: self.max_reconnect_delay,
        };
        // Subscribe before returning, so that no write by another process made after `build`
        // returns can go unnoticed.
        let first = subscriber.connect(0).await.map_err(|e| {
            unavailable(format!("cannot subscribe to the invalidation channel: {e}"))
        })?;
        let task = tokio::spawn(subscriber.run(first)).abort_handle();

        let mut key_prefix = self.prefix.clone().into_bytes();
        key_prefix.push(b':');
        Ok(RedisTier {
            name: self.name,
            key_prefix,
            channel,
            conns,
            next: AtomicUsize::new(0),
            timeout: self.timeout,
            origin,
            invalidations: sender,
            stats,
            scan_batch: self.scan_batch,
            max_value_len: self.max_value_len,
            cluster: self.cluster,
            subscriber: task,
        })
    }

    /// One probe connection first, so that a refused connection or bad password is reported
    /// as such (the connection manager would retry it with backoff instead), then the pool.
    async fn connect_single(
        &self,
        client: &redis::Client,
    ) -> std::result::Result<Vec<Conn>, String> {
        let probe_config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(self.connect_timeout)
            .set_response_timeout(self.connect_timeout);
        let probe = async {
            let mut conn =
                client.get_multiplexed_async_connection_with_config(&probe_config).await?;
            redis::cmd("PING").query_async::<()>(&mut conn).await
        };
        match tokio::time::timeout(self.connect_timeout, probe).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(format!("cannot connect: {e}")),
            Err(_) => return Err(format!("no connection within {:?}", self.connect_timeout)),
        }
        // The manager's backoff is 1 s, then doubling per attempt (the redis crate fixes the
        // first delay), capped at `max_reconnect_delay`; each attempt is bounded by the connect
        // timeout. After the retries run out, the next call starts a new round.
        let max_delay = u64::try_from(self.max_reconnect_delay.as_millis()).unwrap_or(u64::MAX);
        let config = ConnectionManagerConfig::new()
            .set_factor(2)
            .set_max_delay(max_delay)
            .set_number_of_retries(6)
            .set_connection_timeout(self.connect_timeout);
        // No response timeout in the manager: `bounded` already puts one on every call, and a
        // second would cost a second timer per call.
        let mut conns = Vec::with_capacity(self.pool_size);
        for _ in 0..self.pool_size {
            let manager = ConnectionManager::new_with_config(client.clone(), config.clone());
            match tokio::time::timeout(self.connect_timeout, manager).await {
                Ok(Ok(manager)) => conns.push(Conn::Single(manager)),
                Ok(Err(e)) => return Err(format!("cannot connect: {e}")),
                Err(_) => return Err(format!("no connection within {:?}", self.connect_timeout)),
            }
        }
        Ok(conns)
    }

    async fn connect_cluster(
        &self,
        infos: Vec<redis::ConnectionInfo>,
    ) -> std::result::Result<Vec<Conn>, String> {
        let mut builder = ClusterClientBuilder::new(infos);
        if let Some(certs) = self.tls_certificates() {
            builder = builder.certs(certs);
        }
        let client = builder
            .connection_timeout(self.connect_timeout)
            .response_timeout(self.timeout)
            .retries(3)
            .max_retry_wait(u64::try_from(self.max_reconnect_delay.as_millis()).unwrap_or(u64::MAX))
            .build()
            .map_err(|e| format!("cluster client: {e}"))?;
        let mut conns = Vec::with_capacity(self.pool_size);
        for _ in 0..self.pool_size {
            let connect = async {
                let mut conn = client.get_async_connection().await?;
                // Prove the slot map works end to end before declaring the tier ready.
                redis::cmd("PING").query_async::<()>(&mut conn).await?;
                Ok::<_, redis::RedisError>(conn)
            };
            match tokio::time::timeout(self.connect_timeout, connect).await {
                Ok(Ok(conn)) => conns.push(Conn::Cluster(conn)),
                Ok(Err(e)) => return Err(format!("cannot connect to the cluster: {e}")),
                Err(_) => {
                    return Err(format!("no cluster connection within {:?}", self.connect_timeout))
                }
            }
        }
        Ok(conns)
    }
}

/// One command connection: a single server's manager or a cluster's router. Both are cheap
/// handles onto a shared multiplexed connection, cloned per call.
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Conn {
    async fn query<T: FromRedisValue>(&mut self, cmd: &Cmd) -> RedisResult<T> {
        match self {
            Conn::Single(c) => cmd.query_async(c).await,
            Conn::Cluster(c) => cmd.query_async(c).await,
        }
    }

    /// Sends `cmd` where `routing` says; a single server takes every command itself.
    async fn route(&mut self, cmd: &Cmd, routing: RoutingInfo) -> RedisResult<Value> {
        match self {
            Conn::Single(c) => cmd.query_async(c).await,
            Conn::Cluster(c) => c.route_command(cmd, routing).await,
        }
    }

    async fn pipeline(&mut self, pipe: &Pipeline) -> RedisResult<()> {
        match self {
            Conn::Single(c) => pipe.query_async(c).await,
            Conn::Cluster(c) => pipe.query_async(c).await,
        }
    }
}

/// Counters kept by a [`RedisTier`] and its subscriber task.
#[derive(Debug, Default)]
struct Stats {
    errors: AtomicU64,
    timeouts: AtomicU64,
    corrupt: AtomicU64,
    notices_published: AtomicU64,
    invalidations_received: AtomicU64,
    subscription_losses: AtomicU64,
    resubscriptions: AtomicU64,
    flushes_sent: AtomicU64,
}

/// A snapshot of a [`RedisTier`]'s counters, from [`RedisTier::stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisTierStats {
    /// Calls that failed with a Redis error (connection lost, refused, server error).
    pub errors: u64,
    /// Calls that ran out of time.
    pub timeouts: u64,
    /// Values under the prefix that were not in this tier's format, reported and not served.
    pub corrupt: u64,
    /// Invalidation notices this tier published (one per successful put, remove or clear).
    pub notices_published: u64,
    /// Notices from other instances forwarded as invalidations.
    pub invalidations_received: u64,
    /// Times the invalidation subscription was lost.
    pub subscription_losses: u64,
    /// Times it was restored after a loss.
    pub resubscriptions: u64,
    /// [`Invalidation::All`] sent because notices may have been missed.
    pub flushes_sent: u64,
}

/// A [`Tier`] on Redis; see the [module documentation](self) for the layout, coherence and
/// failure behaviour.
///
/// ```no_run
/// # async fn demo() -> strata_tier::Result<()> {
/// use std::time::{Duration, Instant};
/// use strata_tier::redis::RedisTier;
/// use strata_tier::{Tier, TierEntry};
///
/// let tier = RedisTier::builder("redis://127.0.0.1:6379/")
///     .prefix("myservice:cache")
///     .timeout(Duration::from_millis(200))
///     .build()
///     .await?;
/// let deadline = Instant::now() + Duration::from_secs(1);
/// tier.put(b"user:1", TierEntry { value: b"alice".to_vec(), expires_at: None }, deadline).await?;
/// assert_eq!(tier.get(b"user:1", deadline).await?.map(|e| e.value), Some(b"alice".to_vec()));
/// # Ok(())
/// # }
/// ```
pub struct RedisTier {
    name: String,
    /// `<prefix>:`, the bytes in front of every key.
    key_prefix: Vec<u8>,
    /// `<prefix>:invalidate`.
    channel: String,
    conns: Vec<Conn>,
    /// Round-robin position in `conns`.
    next: AtomicUsize,
    timeout: Duration,
    origin: Origin,
    invalidations: broadcast::Sender<Invalidation>,
    stats: Arc<Stats>,
    scan_batch: usize,
    max_value_len: usize,
    /// Whether `conns` are cluster connections (all of them or none are).
    cluster: bool,
    /// The subscriber task, stopped when the tier is dropped.
    subscriber: AbortHandle,
}

impl std::fmt::Debug for RedisTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTier")
            .field("name", &self.name)
            .field("channel", &self.channel)
            .field("connections", &self.conns.len())
            .finish_non_exhaustive()
    }
}

impl Drop for RedisTier {
    fn drop(&mut self) {
        self.subscriber.abort();
    }
}

impl RedisTier {
    /// A builder for a tier on the single server at `url` (`redis://[user:password@]host:port/db`,
    /// or `rediss://` for TLS).
    pub fn builder(url: impl Into<String>) -> RedisTierBuilder {
        RedisTierBuilder::new(vec![url.into()], false)
    }

    /// A builder for a tier on the Redis Cluster reachable through any of `urls` (the seed
    /// nodes; the rest of the cluster is discovered from them).
    pub fn cluster_builder<I, S>(urls: I) -> RedisTierBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        RedisTierBuilder::new(urls.into_iter().map(Into::into).collect(), true)
    }

    /// The counters so far.
    pub fn stats(&self) -> RedisTierStats {
        let s = &self.stats;
        RedisTierStats {
            errors: s.errors.load(Relaxed),
            timeouts: s.timeouts.load(Relaxed),
            corrupt: s.corrupt.load(Relaxed),
            notices_published: s.notices_published.load(Relaxed),
            invalidations_received: s.invalidations_received.load(Relaxed),
            subscription_losses: s.subscription_losses.load(Relaxed),
            resubscriptions: s.resubscriptions.load(Relaxed),
            flushes_sent: s.flushes_sent.load(Relaxed),
        }
    }

    /// The channel this tier publishes and hears invalidation notices on.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// The Redis key that holds `key`.
    pub fn redis_key(&self, key: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.key_prefix.len() + key.len());
        out.extend_from_slice(&self.key_prefix);
        out.extend_from_slice(key);
        out
    }

    fn conn(&self) -> Conn {
        let i = self.next.fetch_add(1, Relaxed) % self.conns.len();
        self.conns[i].clone()
    }

    /// Runs `call`, bounded by `min(deadline, now + timeout)`, and maps its failure.
    ///
    /// A call that fails because the connection dropped is made once more within the same
    /// bound: the first failure is how a connection manager learns that its connection is
    /// gone (it reconnects at once), and every command this tier sends is idempotent (`GET`,
    /// `SET`, `UNLINK`, `SCAN`, and a `PUBLISH` that at worst invalidates twice).
    async fn bounded<T, F, Fut>(
        &self,
        op: &'static str,
        deadline: Instant,
        mut call: F,
    ) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let limit = Instant::now().checked_add(self.timeout).map_or(deadline, |t| t.min(deadline));
        let attempt = async {
            match call().await {
                Err(e) if e.is_connection_dropped() && !e.is_timeout() => call().await,
                other => other,
            }
        };
        match crate::rt::timeout_at(limit.into(), attempt)?.await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) if e.is_timeout() => Err(self.timed_out(op)),
            Ok(Err(e)) => {
                self.stats.errors.fetch_add(1, Relaxed);
                tracing::debug!(tier = %self.name, op, error = %e, "redis call failed");
                Err(Error::Redis(e))
            }
            Err(_) => Err(self.timed_out(op)),
        }
    }

    fn timed_out(&self, op: &'static str) -> Error {
        self.stats.timeouts.fetch_add(1, Relaxed);
        Error::Timeout { tier: self.name.clone(), op }
    }

    /// Applies `write`, then publishes `notice`; the notice is only sent when the write was
    /// accepted. On a single server both go in one pipeline (one round trip). In a cluster
    /// they go one after the other, since the client routes `PUBLISH` by the channel's slot
    /// and a pipeline must stay on one slot.
    ///
    /// A server at its `maxmemory` under `noeviction` answers `OOM` to the write: that is
    /// [`Error::Refused`], a refusal of this write by a healthy server (it still serves reads
    /// and removals), not a failure that should open the tier's breaker.
    async fn write(
        &self,
        op: &'static str,
        write: Cmd,
        notice: Notice,
        deadline: Instant,
    ) -> Result<()> {
        self.write_unclassified(op, write, notice, deadline).await.map_err(|e| match e {
            Error::Redis(e) if e.code() == Some("OOM") => {
                Error::Refused { tier: self.name.clone(), reason: e.to_string() }
            }
            e => e,
        })
    }

    /// [`Self::write`] with Redis errors as they came.
    async fn write_unclassified(
        &self,
        op: &'static str,
        write: Cmd,
        notice: Notice,
        deadline: Instant,
    ) -> Result<()> {
        let mut publish = redis::cmd("PUBLISH");
        publish.arg(&self.channel).arg(encode_notice(self.origin, &notice));
        let (write, publish) = (&write, &publish);
        if self.cluster {
            self.bounded(op, deadline, || async move { self.conn().query::<()>(write).await })
                .await?;
            self.bounded(op, deadline, || async move { self.conn().query::<()>(publish).await })
                .await?;
        } else {
            let mut pipe = redis::pipe();
            pipe.add_command(write.clone()).ignore().add_command(publish.clone()).ignore();
            let pipe = &pipe;
            self.bounded(op, deadline, || async move { self.conn().pipeline(pipe).await }).await?;
        }
        self.stats.notices_published.fetch_add(1, Relaxed);
        Ok(())
    }

    async fn get_entry(&self, key: &[u8], deadline: Instant) -> Result<Option<TierEntry>> {
        let rkey = self.redis_key(key);
        let mut cmd = redis::cmd("GET");
        cmd.arg(&rkey);
        let cmd = &cmd;
        let corrupt = |detail: String| {
            self.stats.corrupt.fetch_add(1, Relaxed);
            Error::Corrupt {
                path: PathBuf::from(format!("redis key {}", String::from_utf8_lossy(&rkey))),
                detail,
            }
        };
        let bytes: Option<Vec<u8>> = match self
            .bounded("get", deadline, || async move { self.conn().query(cmd).await })
            .await
        {
            Ok(bytes) => bytes,
            // A list, hash or other non-string under the prefix is foreign data in this
            // key, as foreign bytes are: reported as such, not as a server failure (which
            // would count toward opening the tier's breaker for every key).
            Err(Error::Redis(e)) if e.code() == Some("WRONGTYPE") => {
                return Err(corrupt("a Redis value of another type, not a string".to_owned()))
            }
            Err(e) => return Err(e),
        };
        let Some(bytes) = bytes else { return Ok(None) };
        match decode_entry(bytes) {
            Ok(entry) if entry.is_expired(SystemTime::now()) => Ok(None),
            Ok(entry) => Ok(Some(entry)),
            Err(detail) => Err(corrupt(detail)),
        }
    }

    async fn put_entry(&self, key: &[u8], entry: TierEntry, deadline: Instant) -> Result<()> {
        let len = HEADER_LEN.saturating_add(entry.value.len());
        if len > self.max_value_len {
            return Err(Error::TooLarge { what: "value", len, max: self.max_value_len });
        }
        let ttl = match entry.expires_at {
            None => None,
            Some(at) => match at.remaining(SystemTime::now()) {
                // Already expired: the contract says store nothing and drop the old value.
                None => return self.remove_entry(key, deadline).await,
                // Redis refuses a `PX` whose deadline overflows its own millisecond clock
                // ("value is not an integer or out of range", "invalid expire time"), which a
                // saturated "never" expiry does; a TTL that long is left to the stored expiry.
                Some(left) => u64::try_from(left.as_millis())
                    .ok()
                    .filter(|&ms| ms <= MAX_PX_MILLIS)
                    .map(|ms| ms.max(1)),
            },
        };
        let mut set = redis::cmd("SET");
        set.arg(self.redis_key(key)).arg(encode_entry(&entry));
        // A relative TTL (not PXAT) keeps working when Redis's clock differs from ours, and on
        // servers older than 6.2; the absolute expiry inside the value stays authoritative.
        if let Some(ms) = ttl {
            set.arg("PX").arg(ms);
        }
        self.write("put", set, Notice::Key(key.to_vec()), deadline).await
    }

    async fn remove_entry(&self, key: &[u8], deadline: Instant) -> Result<()> {
        let mut unlink = redis::cmd("UNLINK");
        unlink.arg(self.redis_key(key));
        self.write("remove", unlink, Notice::Key(key.to_vec()), deadline).await
    }

    async fn clear_all(&self, deadline: Instant) -> Result<()> {
        let pattern = glob_escape(&self.key_prefix);
        if self.cluster {
            for (host, port) in self.masters(deadline).await? {
                let route = SingleNodeRoutingInfo::ByAddress { host, port };
                self.clear_node(Some(&route), &pattern, deadline).await?;
            }
        } else {
            self.clear_node(None, &pattern, deadline).await?;
        }
        let mut publish = redis::cmd("PUBLISH");
        publish.arg(&self.channel).arg(encode_notice(self.origin, &Notice::All));
        let publish = &publish;
        self.bounded("clear", deadline, || async move { self.conn().query::<()>(publish).await })
            .await?;
        self.stats.notices_published.fetch_add(1, Relaxed);
        Ok(())
    }

    /// The addresses of the cluster's masters, from a `PING` sent to all of them.
    async fn masters(&self, deadline: Instant) -> Result<Vec<(String, u16)>> {
        let ping = &redis::cmd("PING");
        let reply = self
            .bounded("clear", deadline, || async move {
                let routing = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None));
                self.conn().route(ping, routing).await
            })
            .await?;
        let Value::Map(pairs) = reply else {
            return Err(Error::Unavailable {
                tier: self.name.clone(),
                reason: format!("unexpected reply listing the cluster's masters: {reply:?}"),
            });
        };
        pairs
            .into_iter()
            .map(|(addr, _)| {
                let addr = String::from_redis_value(&addr)?;
                let parsed = addr
                    .rsplit_once(':')
                    .and_then(|(host, port)| Some((host.to_string(), port.parse().ok()?)));
                parsed.ok_or_else(|| {
                    redis::RedisError::from((
                        redis::ErrorKind::ParseError,
                        "cluster node address without a port",
                        addr,
                    ))
                })
            })
            .collect::<RedisResult<Vec<_>>>()
            .map_err(Error::Redis)
    }

    /// `SCAN`s one node (`route`, in a cluster) or the single server and `UNLINK`s what
    /// matches, batch by batch.
    async fn clear_node(
        &self,
        route: Option<&SingleNodeRoutingInfo>,
        pattern: &[u8],
        deadline: Instant,
    ) -> Result<()> {
        let mut cursor: u64 = 0;
        for _ in 0..MAX_SCAN_ROUNDS {
            let mut scan = redis::cmd("SCAN");
            scan.arg(cursor).arg("MATCH").arg(pattern).arg("COUNT").arg(self.scan_batch);
            let scan = &scan;
            let (next, keys): (u64, Vec<Vec<u8>>) = self
                .bounded("clear", deadline, || async move {
                    let mut conn = self.conn();
                    match route {
                        Some(route) => {
                            let routing = RoutingInfo::SingleNode(route.clone());
                            redis::from_owned_redis_value(conn.route(scan, routing).await?)
                        }
                        None => conn.query(scan).await,
                    }
                })
                .await?;
            for batch in keys.chunks(self.scan_batch) {
                let mut unlink = redis::cmd("UNLINK");
                unlink.arg(batch);
                let unlink = &unlink;
                self.bounded(
                    "clear",
                    deadline,
                    || async move { self.conn().query::<()>(unlink).await },
                )
                .await?;
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
        Err(Error::Unavailable {
            tier: self.name.clone(),
            reason: format!("clear gave up after {MAX_SCAN_ROUNDS} SCAN rounds on one node"),
        })
    }
}

/// `prefix` with the glob characters of `SCAN MATCH` escaped, followed by `*`.
fn glob_escape(prefix: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(prefix.len() + 8);
    for &b in prefix {
        if matches!(b, b'*' | b'?' | b'[' | b']' | b'\\') {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.push(b'*');
    out
}

impl Tier for RedisTier {
    fn name(&self) -> &str {
        &self.name
    }

    fn get<'a>(&'a self, key: &'a [u8], deadline: Instant) -> TierFuture<'a, Option<TierEntry>> {
        Box::pin(self.get_entry(key, deadline))
    }

    fn put<'a>(&'a self, key: &'a [u8], entry: TierEntry, deadline: Instant) -> TierFuture<'a, ()> {
        Box::pin(self.put_entry(key, entry, deadline))
    }

    fn remove<'a>(&'a self, key: &'a [u8], deadline: Instant) -> TierFuture<'a, ()> {
        Box::pin(self.remove_entry(key, deadline))
    }

    fn clear<'a>(&'a self, deadline: Instant) -> TierFuture<'a, ()> {
        Box::pin(self.clear_all(deadline))
    }

    fn invalidations(&self) -> Option<broadcast::Receiver<Invalidation>> {
        Some(self.invalidations.subscribe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_escape_quotes_every_pattern_character() {
        assert_eq!(glob_escape(b"app:"), b"app:*");
        assert_eq!(glob_escape(br"a*b?[c]\:"), br"a\*b\?\[c\]\\:*");
    }

    #[test]
    fn builder_rejects_nonsense() {
        let ok = || RedisTier::builder("redis://127.0.0.1:1/").prefix("p");
        assert!(ok().validate().is_ok());
        let cases: Vec<(&str, RedisTierBuilder)> = vec![
            ("no prefix", RedisTier::builder("redis://127.0.0.1:1/")),
            ("empty prefix", ok().prefix("")),
            ("zero timeout", ok().timeout(Duration::ZERO)),
            ("huge timeout", ok().timeout(Duration::from_secs(7200))),
            ("zero connect timeout", ok().connect_timeout(Duration::ZERO)),
            ("zero pool", ok().pool_size(0)),
            ("huge pool", ok().pool_size(65)),
            ("zero capacity", ok().invalidation_capacity(0)),
            ("zero scan batch", ok().scan_batch(0)),
            ("no nodes", RedisTier::cluster_builder(Vec::<String>::new()).prefix("p")),
            ("two urls, single", {
                let mut b = ok();
                b.nodes.push("redis://127.0.0.1:2/".into());
                b
            }),
        ];
        for (what, builder) in cases {
            assert!(
                matches!(builder.validate(), Err(Error::InvalidConfig(_))),
                "{what} must be rejected"
            );
        }
    }

    #[test]
    fn bad_urls_are_config_errors_that_hide_the_url() {
        let b = RedisTier::builder("http://user:secret@host/").prefix("p");
        let err = b.node_info(0).unwrap_err().to_string();
        assert!(!err.contains("secret"), "{err}");
        let b =
            RedisTier::builder("redis://u:pw@127.0.0.1:7/").prefix("p").username("x").password("y");
        let info = b.node_info(0).unwrap();
        assert_eq!(info.redis.username.as_deref(), Some("x"));
        assert_eq!(info.redis.password.as_deref(), Some("y"));
        assert!(!format!("{b:?}").contains("pw"), "Debug must not print credentials");
    }

    #[tokio::test]
    async fn a_server_that_is_down_at_build_is_a_clear_error() {
        // Port 1 on loopback is never a Redis server; the connection is refused at once.
        let err = RedisTier::builder("redis://127.0.0.1:1/")
            .prefix("p")
            .connect_timeout(Duration::from_millis(500))
            .build()
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Unavailable { .. }), "{err}");
    }
}
