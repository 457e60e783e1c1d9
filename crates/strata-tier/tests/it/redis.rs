//! The Redis tier against a real `redis-server`: the conformance suite on a single server and
//! on a three-master cluster, TTLs as Redis sees them, prefix isolation, invalidation between
//! instances, AUTH, and a server killed and restarted under the tier.
//!
//! Each test starts its own server(s) on free loopback ports (see `redis_server.rs`). Without
//! `redis-server` installed these tests print a loud notice and return, unless `CI=true`, in
//! which case they fail.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use strata_tier::redis::{RedisTier, RedisTierBuilder};
use strata_tier::{Error, ExpiresAt, Invalidation, Tier, TierEntry};
use tokio::sync::broadcast::{self, error::TryRecvError};

use crate::conformance::run_suite;
use crate::redis_server::{RedisCluster, RedisServer};

/// The deadline given to calls that are expected to succeed.
fn deadline() -> Instant {
    Instant::now() + Duration::from_secs(5)
}

fn forever(v: &[u8]) -> TierEntry {
    TierEntry { value: v.to_vec(), expires_at: None }
}

/// Settings that find failures fast, so that the fault test stays short.
fn quick(builder: RedisTierBuilder) -> RedisTierBuilder {
    builder
        .timeout(Duration::from_millis(500))
        .connect_timeout(Duration::from_secs(2))
        .max_reconnect_delay(Duration::from_millis(300))
        .liveness_interval(Duration::from_millis(500))
}

async fn tier(url: &str, prefix: &str) -> RedisTier {
    quick(RedisTier::builder(url).prefix(prefix)).build().await.expect("build the redis tier")
}

/// The next invalidation within `wait`, or `None`.
async fn next_within(
    rx: &mut broadcast::Receiver<Invalidation>,
    wait: Duration,
) -> Option<Invalidation> {
    match tokio::time::timeout(wait, rx.recv()).await {
        Ok(Ok(inv)) => Some(inv),
        Ok(Err(e)) => panic!("invalidation stream failed: {e}"),
        Err(_) => None,
    }
}

/// The first notice equal to `want` within `wait`, skipping others: notices of earlier writes
/// may still be crossing the cluster bus when a new subscriber joins, and they are legitimate.
async fn next_matching(
    rx: &mut broadcast::Receiver<Invalidation>,
    wait: Duration,
    want: &Invalidation,
) -> Option<Invalidation> {
    let until = tokio::time::Instant::now() + wait;
    loop {
        let left = until.saturating_duration_since(tokio::time::Instant::now());
        match next_within(rx, left).await {
            Some(inv) if &inv == want => return Some(inv),
            Some(_) => continue,
            None => return None,
        }
    }
}

/// A plain client connection for looking at what the tier stored.
async fn raw(url: &str) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(url).expect("client");
    client.get_multiplexed_async_connection().await.expect("raw connection")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_tier_conforms_on_one_server() {
    let Some(server) = RedisServer::start("redis_tier_conforms_on_one_server") else { return };
    let url = server.url();
    let n = AtomicUsize::new(0);
    run_suite(|| {
        // A fresh prefix per case: the suite wants an empty tier that no other case sees.
        let prefix = format!("conf{}", n.fetch_add(1, Ordering::Relaxed));
        let url = url.clone();
        async move { Arc::new(tier(&url, &prefix).await) as Arc<dyn Tier> }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_tier_conforms_on_a_cluster_and_clears_every_master() {
    let Some(cluster) = RedisCluster::start("redis_tier_conforms_on_a_cluster") else { return };
    let urls = cluster.urls();
    let build = |prefix: String| {
        let urls = urls.clone();
        async move {
            quick(RedisTier::cluster_builder(urls).prefix(prefix))
                .build()
                .await
                .expect("build the cluster tier")
        }
    };
    let n = AtomicUsize::new(0);
    run_suite(|| {
        let tier = build(format!("conf{}", n.fetch_add(1, Ordering::Relaxed)));
        async move { Arc::new(tier.await) as Arc<dyn Tier> }
    })
    .await;

    // Enough keys that every master holds some, so that clear must visit all three.
    let a = build("a".into()).await;
    let b = build("b".into()).await;
    let mut b_rx = b.invalidations().expect("a redis tier offers invalidations");
    for i in 0..300u32 {
        a.put(format!("k{i}").as_bytes(), forever(b"v"), deadline()).await.expect("put a");
    }
    b.put(b"kept", forever(b"v"), deadline()).await.expect("put b");
    // Counted per node with SCAN: the suite's cases left their own prefixes behind.
    let count = |node: &RedisServer, pattern: &str| {
        node.cli(&["--scan", "--pattern", pattern]).lines().filter(|l| !l.is_empty()).count()
    };
    let sizes: Vec<usize> = cluster.nodes().iter().map(|node| count(node, "a:*")).collect();
    assert!(sizes.iter().all(|&s| s > 0), "keys should spread over every master: {sizes:?}");
    assert_eq!(sizes.iter().sum::<usize>(), 300);

    // The same prefix in two instances: notices cross the cluster bus to the other's node.
    let a2 = build("a".into()).await;
    let mut a2_rx = a2.invalidations().expect("invalidations");
    a.put(b"k1", forever(b"new"), deadline()).await.expect("put");
    let want = Invalidation::Key(b"k1".to_vec());
    let got = next_matching(&mut a2_rx, Duration::from_secs(5), &want).await;
    assert_eq!(got, Some(want));

    a.clear(deadline()).await.expect("clear on a cluster");
    let left: Vec<(usize, usize)> =
        cluster.nodes().iter().map(|node| (count(node, "a:*"), count(node, "b:*"))).collect();
    assert_eq!(left.iter().map(|l| l.0).sum::<usize>(), 0, "clear of prefix a on every master");
    assert_eq!(left.iter().map(|l| l.1).sum::<usize>(), 1, "prefix b kept its key");
    assert_eq!(b.get(b"kept", deadline()).await.expect("get"), Some(forever(b"v")));
    let all = next_matching(&mut a2_rx, Duration::from_secs(5), &Invalidation::All).await;
    assert_eq!(all, Some(Invalidation::All));
    assert!(matches!(b_rx.try_recv(), Err(TryRecvError::Empty)), "b hears only prefix b");
}

#[tokio::test]
async fn ttl_is_handed_to_redis_and_the_value_carries_its_expiry() {
    let Some(server) = RedisServer::start("ttl_is_handed_to_redis") else { return };
    let t = tier(&server.url(), "ttl").await;
    let mut conn = raw(&server.url()).await;
    let entry = TierEntry {
        value: b"v".to_vec(),
        expires_at: Some(ExpiresAt::after(SystemTime::now(), Duration::from_secs(60))),
    };
    t.put(b"k", entry.clone(), deadline()).await.expect("put");
    let pttl: i64 = redis::cmd("PTTL").arg("ttl:k").query_async(&mut conn).await.expect("pttl");
    assert!(pttl > 0 && pttl <= 60_000, "PTTL {pttl} should be within the minute given");
    assert_eq!(t.get(b"k", deadline()).await.expect("get"), Some(entry));

    t.put(b"k", forever(b"w"), deadline()).await.expect("put");
    let pttl: i64 = redis::cmd("PTTL").arg("ttl:k").query_async(&mut conn).await.expect("pttl");
    assert_eq!(pttl, -1, "an entry without expiry has no TTL in Redis (the old one is gone)");

    t.remove(b"k", deadline()).await.expect("remove");
    let exists: i64 = redis::cmd("EXISTS").arg("ttl:k").query_async(&mut conn).await.expect("x");
    assert_eq!(exists, 0);
}

#[tokio::test]
async fn foreign_bytes_under_the_prefix_are_reported_not_served() {
    let Some(server) = RedisServer::start("foreign_bytes_are_reported") else { return };
    let t = tier(&server.url(), "f").await;
    let mut conn = raw(&server.url()).await;
    for bytes in [&b""[..], b"plain text", &[0x53, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0]] {
        let () = redis::cmd("SET").arg("f:k").arg(bytes).query_async(&mut conn).await.expect("set");
        let err = t.get(b"k", deadline()).await.expect_err("foreign bytes must not be served");
        assert!(matches!(err, Error::Corrupt { .. }), "{bytes:?}: {err}");
    }
    assert_eq!(t.stats().corrupt, 3);
    t.put(b"k", forever(b"mine"), deadline()).await.expect("a put replaces foreign bytes");
    assert_eq!(t.get(b"k", deadline()).await.expect("get"), Some(forever(b"mine")));
}

#[tokio::test]
async fn clear_removes_only_its_own_prefix() {
    let Some(server) = RedisServer::start("clear_removes_only_its_own_prefix") else { return };
    let url = server.url();
    // "a*" and "a?" hold glob characters: an unescaped SCAN MATCH "a*:*" would also match
    // "a:..." keys, and "a?:*" would match "ab:...".
    let prefixes = ["a", "a*", "a?", "ab", "b"];
    let mut tiers = Vec::new();
    for p in prefixes {
        let t = tier(&url, p).await;
        for i in 0..50u32 {
            t.put(format!("k{i}").as_bytes(), forever(p.as_bytes()), deadline())
                .await
                .expect("put");
        }
        tiers.push(t);
    }
    let mut conn = raw(&url).await;
    let () = redis::cmd("SET").arg("a").arg("not ours").query_async(&mut conn).await.expect("set");
    let () = redis::cmd("SET").arg("unrelated").arg("x").query_async(&mut conn).await.expect("set");

    for (i, cleared) in tiers.iter().enumerate() {
        cleared.clear(deadline()).await.expect("clear");
        assert_eq!(cleared.get(b"k0", deadline()).await.expect("get"), None);
        for (j, other) in tiers.iter().enumerate().skip(i + 1) {
            let got = other.get(b"k49", deadline()).await.expect("get");
            assert_eq!(
                got,
                Some(forever(prefixes[j].as_bytes())),
                "clear of {} hit {}",
                prefixes[i],
                prefixes[j]
            );
        }
    }
    let dbsize: i64 = redis::cmd("DBSIZE").query_async(&mut conn).await.expect("dbsize");
    assert_eq!(dbsize, 2, "keys outside every prefix are untouched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_through_one_instance_invalidates_the_others() {
    let Some(server) = RedisServer::start("a_write_invalidates_the_others") else { return };
    let url = server.url();
    let a = tier(&url, "shared").await;
    let b = tier(&url, "shared").await;
    let c = tier(&url, "elsewhere").await;
    let mut a_rx = a.invalidations().expect("invalidations");
    let mut b_rx = b.invalidations().expect("invalidations");
    let mut c_rx = c.invalidations().expect("invalidations");
    let wait = Duration::from_secs(5);

    a.put(b"k1", forever(b"v"), deadline()).await.expect("put");
    assert_eq!(next_within(&mut b_rx, wait).await, Some(Invalidation::Key(b"k1".to_vec())));
    // Pub/sub keeps the order of publishes: had A heard its own notice for k1, it would come
    // before the notice for k2 that B publishes now.
    b.put(b"k2", forever(b"v"), deadline()).await.expect("put");
    assert_eq!(next_within(&mut a_rx, wait).await, Some(Invalidation::Key(b"k2".to_vec())));

    a.remove(b"k2", deadline()).await.expect("remove");
    assert_eq!(next_within(&mut b_rx, wait).await, Some(Invalidation::Key(b"k2".to_vec())));
    // An expired put removes, and says so.
    let past = TierEntry { value: b"old".to_vec(), expires_at: Some(ExpiresAt(1)) };
    a.put(b"k3", past, deadline()).await.expect("expired put");
    assert_eq!(next_within(&mut b_rx, wait).await, Some(Invalidation::Key(b"k3".to_vec())));
    a.clear(deadline()).await.expect("clear");
    assert_eq!(next_within(&mut b_rx, wait).await, Some(Invalidation::All));

    // A notice from this test's own marker line: nothing else is pending for anyone.
    b.put(b"marker", forever(b"v"), deadline()).await.expect("put");
    assert_eq!(next_within(&mut a_rx, wait).await, Some(Invalidation::Key(b"marker".to_vec())));
    assert!(matches!(a_rx.try_recv(), Err(TryRecvError::Empty)), "A heard its own writes");
    assert!(matches!(b_rx.try_recv(), Err(TryRecvError::Empty)), "B heard its own writes");
    assert!(matches!(c_rx.try_recv(), Err(TryRecvError::Empty)), "another prefix was told");
    assert_eq!(a.stats().notices_published, 4);
    assert_eq!(b.stats().invalidations_received, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_gives_errors_then_service_resumes_after_restart() {
    let Some(mut server) = RedisServer::start("a_killed_server_gives_errors") else { return };
    let url = server.url();
    let a = tier(&url, "fault").await;
    let b = tier(&url, "fault").await;
    let mut a_rx = a.invalidations().expect("invalidations");
    let mut b_rx = b.invalidations().expect("invalidations");
    a.put(b"k", forever(b"v"), deadline()).await.expect("put before the crash");
    assert_eq!(
        next_within(&mut b_rx, Duration::from_secs(5)).await,
        Some(Invalidation::Key(b"k".to_vec()))
    );

    server.kill();
    // Every call fails with an error by its deadline (no hang, no panic), while the server
    // is down.
    for _ in 0..3 {
        let call_deadline = Instant::now() + Duration::from_secs(2);
        let results = [
            a.get(b"k", call_deadline).await.map(|_| ()),
            a.put(b"k", forever(b"w"), call_deadline).await,
            a.remove(b"k", call_deadline).await,
            a.clear(call_deadline).await,
        ];
        for r in results {
            match r {
                Err(Error::Timeout { .. } | Error::Redis(_)) => {}
                other => panic!("a call to a dead server gave {other:?}"),
            }
        }
        assert!(
            Instant::now() < call_deadline + Duration::from_secs(2),
            "calls overran their deadline"
        );
    }
    let stats = a.stats();
    assert!(stats.errors + stats.timeouts >= 12, "{stats:?}");
    // Both subscribers saw the connection go and told the tiers above to flush.
    assert_eq!(next_within(&mut a_rx, Duration::from_secs(10)).await, Some(Invalidation::All));
    assert_eq!(next_within(&mut b_rx, Duration::from_secs(10)).await, Some(Invalidation::All));
    // A tier built while the server is down is refused with a clear error.
    let err = quick(RedisTier::builder(url.as_str()).prefix("fault")).build().await.unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err}");

    server.restart();
    // The connection manager reconnects with bounded backoff; poll for the first success.
    let start = Instant::now();
    loop {
        match a.get(b"k", Instant::now() + Duration::from_secs(1)).await {
            // The server kept nothing (no persistence), so the key is gone.
            Ok(found) => {
                assert_eq!(found, None);
                break;
            }
            Err(_) if start.elapsed() < Duration::from_secs(30) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("no recovery within 30 s after the restart: {e}"),
        }
    }
    // The subscriptions came back, and each flushed again for the notices missed meanwhile.
    assert_eq!(next_within(&mut a_rx, Duration::from_secs(15)).await, Some(Invalidation::All));
    assert_eq!(next_within(&mut b_rx, Duration::from_secs(15)).await, Some(Invalidation::All));
    a.put(b"k", forever(b"after"), deadline()).await.expect("put after the restart");
    assert_eq!(b.get(b"k", deadline()).await.expect("get"), Some(forever(b"after")));
    assert_eq!(
        next_within(&mut b_rx, Duration::from_secs(5)).await,
        Some(Invalidation::Key(b"k".to_vec()))
    );
    for t in [&a, &b] {
        let s = t.stats();
        assert!(
            s.subscription_losses >= 1 && s.resubscriptions >= 1 && s.flushes_sent >= 2,
            "{s:?}"
        );
    }
}

#[tokio::test]
async fn auth_by_url_or_by_builder_and_wrong_credentials_are_refused() {
    let Some(server) = RedisServer::start_with("auth", &["--requirepass", "s3cret"]) else {
        return;
    };
    let port = server.port();
    server.cli(&[
        "--no-auth-warning",
        "-a",
        "s3cret",
        "ACL",
        "SETUSER",
        "alice",
        "on",
        ">wonder",
        "~*",
        "&*",
        "+@all",
    ]);
    let plain = format!("redis://127.0.0.1:{port}/");
    let cases: Vec<(&str, RedisTierBuilder, bool)> = vec![
        ("no password", RedisTier::builder(plain.as_str()), false),
        (
            "password in the URL",
            RedisTier::builder(format!("redis://:s3cret@127.0.0.1:{port}/")),
            true,
        ),
        ("explicit password", RedisTier::builder(plain.as_str()).password("s3cret"), true),
        ("wrong password", RedisTier::builder(plain.as_str()).password("nope"), false),
        (
            "ACL user in the URL",
            RedisTier::builder(format!("redis://alice:wonder@127.0.0.1:{port}/")),
            true,
        ),
        (
            "explicit ACL user",
            RedisTier::builder(plain.as_str()).username("alice").password("wonder"),
            true,
        ),
        (
            "ACL user, wrong password",
            RedisTier::builder(plain.as_str()).username("alice").password("s3cret"),
            false,
        ),
    ];
    for (what, builder, works) in cases {
        match quick(builder.prefix("auth")).build().await {
            Ok(t) => {
                assert!(works, "{what}: connected without valid credentials");
                t.put(b"k", forever(what.as_bytes()), deadline()).await.expect(what);
                assert_eq!(
                    t.get(b"k", deadline()).await.expect(what),
                    Some(forever(what.as_bytes()))
                );
            }
            Err(e) => {
                assert!(!works, "{what}: {e}");
                assert!(matches!(e, Error::Unavailable { .. }), "{what}: {e}");
                assert!(
                    !e.to_string().contains("s3cret") && !e.to_string().contains("nope"),
                    "{what}: {e}"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_private_ca_and_client_certificates() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/redis_tls");
    let file = |name: &str| dir.join(name).to_string_lossy().into_owned();
    let read = |name: &str| std::fs::read(dir.join(name)).expect("TLS test material");
    let tls_port = crate::redis_server::free_port(false).to_string();
    let (cert, key, ca) = (file("server.crt"), file("server.key"), file("ca.crt"));
    let args = [
        "--tls-port",
        &tls_port,
        "--tls-cert-file",
        &cert,
        "--tls-key-file",
        &key,
        "--tls-ca-cert-file",
        &ca,
        "--tls-auth-clients",
        "yes",
    ];
    let Some(_server) = RedisServer::start_with("tls", &args) else { return };
    let url = format!("rediss://127.0.0.1:{tls_port}/");
    let full = || {
        RedisTier::builder(url.as_str())
            .prefix("tls")
            .tls_root_certificate(read("ca.crt"))
            .tls_client_certificate(read("client.crt"), read("client.key"))
    };
    let a = quick(full()).build().await.expect("TLS with the private CA and a client cert");
    let b = quick(full()).build().await.expect("a second TLS instance");
    let mut b_rx = b.invalidations().expect("invalidations");
    a.put(b"k", forever(b"over tls"), deadline()).await.expect("put over TLS");
    assert_eq!(b.get(b"k", deadline()).await.expect("get"), Some(forever(b"over tls")));
    let got = next_within(&mut b_rx, Duration::from_secs(5)).await;
    assert_eq!(got, Some(Invalidation::Key(b"k".to_vec())), "notices travel over TLS too");

    let refused: [(&str, RedisTierBuilder); 2] = [
        (
            "no client certificate",
            RedisTier::builder(url.as_str()).tls_root_certificate(read("ca.crt")),
        ),
        (
            "the public roots do not know the private CA",
            RedisTier::builder(url.as_str())
                .tls_client_certificate(read("client.crt"), read("client.key")),
        ),
    ];
    for (what, builder) in refused {
        let err = quick(builder.prefix("tls")).build().await.expect_err(what);
        assert!(matches!(err, Error::Unavailable { .. }), "{what}: {err}");
    }
    let plain = format!("redis://127.0.0.1:{tls_port}/");
    let err = RedisTier::builder(plain).prefix("tls").tls_root_certificate(read("ca.crt"));
    let err = err.build().await.expect_err("certificates with a redis:// URL");
    assert!(matches!(err, Error::InvalidConfig(_)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_server_times_out_and_the_dead_subscription_is_noticed() {
    let Some(server) = RedisServer::start("a_frozen_server_times_out") else { return };
    let a = tier(&server.url(), "frozen").await;
    let mut rx = a.invalidations().expect("invalidations");
    a.put(b"k", forever(b"v"), deadline()).await.expect("put");

    // The socket stays open, so only timeouts (calls) and the liveness PING (subscription)
    // can tell that the server is gone.
    server.pause();
    let call_deadline = Instant::now() + Duration::from_secs(3);
    match a.get(b"k", call_deadline).await {
        Err(Error::Timeout { op: "get", .. }) => {}
        other => panic!("a frozen server should time out, not give {other:?}"),
    }
    match a.put(b"k", forever(b"w"), call_deadline).await {
        Err(Error::Timeout { op: "put", .. }) => {}
        other => panic!("a frozen server should time out, not give {other:?}"),
    }
    assert_eq!(next_within(&mut rx, Duration::from_secs(10)).await, Some(Invalidation::All));
    assert!(a.stats().subscription_losses >= 1 && a.stats().timeouts >= 2, "{:?}", a.stats());

    server.resume();
    // The process kept its data; the put above may or may not have reached it before the
    // freeze took hold, so either value is acceptable, but a value must be there.
    let start = Instant::now();
    let found = loop {
        match a.get(b"k", Instant::now() + Duration::from_secs(1)).await {
            Ok(found) => break found,
            Err(_) if start.elapsed() < Duration::from_secs(30) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("no recovery within 30 s after the resume: {e}"),
        }
    };
    assert!(matches!(found, Some(ref e) if e.value == b"v" || e.value == b"w"), "{found:?}");
    assert_eq!(next_within(&mut rx, Duration::from_secs(15)).await, Some(Invalidation::All));
    assert!(a.stats().resubscriptions >= 1, "{:?}", a.stats());
}

#[tokio::test]
async fn unreadable_notices_flush_and_dropping_the_tier_ends_its_subscription() {
    let Some(server) = RedisServer::start("unreadable_notices_flush") else { return };
    let t = tier(&server.url(), "sub").await;
    let mut rx = t.invalidations().expect("invalidations");
    let mut conn = raw(&server.url()).await;
    let numsub = |conn: &mut redis::aio::MultiplexedConnection| {
        let mut conn = conn.clone();
        async move {
            let (_, n): (String, u64) = redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg("sub:invalidate")
                .query_async(&mut conn)
                .await
                .expect("PUBSUB NUMSUB");
            n
        }
    };
    assert_eq!(numsub(&mut conn).await, 1, "the tier subscribes before build returns");

    // A stray publisher (or a newer format) on the channel: any key may be stale.
    let receivers: u64 = redis::cmd("PUBLISH")
        .arg("sub:invalidate")
        .arg("not a notice")
        .query_async(&mut conn)
        .await
        .expect("publish");
    assert_eq!(receivers, 1);
    assert_eq!(next_within(&mut rx, Duration::from_secs(5)).await, Some(Invalidation::All));

    drop(t);
    // The subscriber task is aborted with the tier; its connection closes soon after.
    let start = Instant::now();
    while numsub(&mut conn).await != 0 {
        assert!(start.elapsed() < Duration::from_secs(10), "the subscription outlived the tier");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        matches!(rx.recv().await, Err(broadcast::error::RecvError::Closed)),
        "the invalidation stream ends with the tier"
    );
}

#[tokio::test]
async fn a_far_future_expiry_is_stored_not_refused() {
    // `ExpiresAt::after` saturates a huge TTL to `u64::MAX` ("never expires"), and a caller may
    // hand any absolute expiry (`TieredCache::insert_until`). Redis refuses a `PX` whose
    // deadline overflows its clock, so such an entry must still be stored.
    let Some(server) = RedisServer::start("a_far_future_expiry_is_stored") else { return };
    let t = tier(&server.url(), "far").await;
    let now = SystemTime::now();
    for at in [
        ExpiresAt::after(now, Duration::MAX),
        ExpiresAt(u64::MAX / 2),
        ExpiresAt(i64::MAX as u64 - 1_000),
    ] {
        let entry = TierEntry { value: b"v".to_vec(), expires_at: Some(at) };
        t.put(b"k", entry.clone(), deadline()).await.unwrap_or_else(|e| panic!("{at:?}: {e}"));
        assert_eq!(t.get(b"k", deadline()).await.expect("get"), Some(entry), "{at:?}");
    }
}

#[tokio::test]
async fn a_foreign_redis_type_under_the_prefix_is_reported_as_corrupt() {
    let Some(server) = RedisServer::start("a_foreign_redis_type_is_corrupt") else { return };
    let t = tier(&server.url(), "ft").await;
    let mut conn = raw(&server.url()).await;
    let _: i64 =
        redis::cmd("RPUSH").arg("ft:k").arg("x").query_async(&mut conn).await.expect("rpush");
    let err = t.get(b"k", deadline()).await.expect_err("a list must not be served");
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    assert_eq!(t.stats().corrupt, 1);
    t.put(b"k", forever(b"mine"), deadline()).await.expect("a put replaces the list");
    assert_eq!(t.get(b"k", deadline()).await.expect("get"), Some(forever(b"mine")));
}
