//! The Redis tier's get throughput with many calls in flight on multiplexed connections, beside
//! `redis-benchmark`'s GET rate against the same server on the same machine, printed as a
//! ratio; and the tier's get latency (p50/p99/p999) with one call at a time.
//!
//! Run with `cargo bench -p strata-benches --bench redis_tier`. The bench starts its own
//! `redis-server` on a free loopback port (no persistence, in a temporary directory) and stops
//! it at the end. Without `redis-server` it prints that and exits successfully: benches are
//! measurements, not tests.

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use strata_tier::redis::RedisTier;
use strata_tier::{Tier, TierEntry};

/// Calls in flight at once in the throughput runs.
const IN_FLIGHT: usize = 64;
/// Distinct keys read (all present, so every get is a hit).
const KEYS: u64 = 1000;
/// redis-benchmark's default value size is 3 bytes; ours is the same, plus the tier's header.
const VALUE: &[u8] = b"xxx";
/// Requests in the summary runs, as in `redis-benchmark -n 100000`.
const SUMMARY_REQUESTS: u64 = 100_000;
/// Alternating rounds of ours and redis-benchmark's in the summary.
const ROUNDS: usize = 3;

/// A `redis-server` child process, killed on drop.
struct Server {
    port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Server {
    /// Starts a server on a free port, or `None` when redis-server is not installed.
    fn start() -> Option<Server> {
        for _ in 0..5 {
            let dir = tempfile::tempdir().expect("temp dir");
            let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .and_then(|l| l.local_addr())
                .expect("a free loopback port")
                .port();
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn();
            let Ok(child) = child else { return None };
            let mut server = Server { port, child, _dir: dir };
            // Bounded wait for the port to accept connections (10 s).
            for _ in 0..500 {
                if TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok() {
                    return Some(server);
                }
                if matches!(server.child.try_wait(), Ok(Some(_))) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            // The port was taken between the probe and the start; dropping the server kills
            // it, and the next attempt tries another port.
        }
        panic!("redis-server did not start in 5 attempts");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn key(i: u64) -> Vec<u8> {
    format!("key:{i}").into_bytes()
}

/// `total` gets spread over `in_flight` concurrent tasks; the time they took.
async fn gets(tier: &Arc<RedisTier>, total: u64, in_flight: usize) -> Duration {
    let mut tasks = tokio::task::JoinSet::new();
    let start = Instant::now();
    for w in 0..in_flight as u64 {
        let tier = Arc::clone(tier);
        let n = total / in_flight as u64 + u64::from(w < total % in_flight as u64);
        tasks.spawn(async move {
            for i in 0..n {
                let deadline = Instant::now() + Duration::from_secs(5);
                let got = tier.get(&key((w * 7919 + i) % KEYS), deadline).await;
                assert!(matches!(got, Ok(Some(_))), "every key is present: {got:?}");
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("a get task panicked");
    }
    start.elapsed()
}

async fn build(port: u16, pool: usize) -> Arc<RedisTier> {
    let tier = RedisTier::builder(format!("redis://127.0.0.1:{port}/"))
        .prefix("bench")
        .pool_size(pool)
        .timeout(Duration::from_secs(5))
        .build()
        .await
        .expect("connect to the bench's redis-server");
    for i in 0..KEYS {
        let entry = TierEntry { value: VALUE.to_vec(), expires_at: None };
        tier.put(&key(i), entry, Instant::now() + Duration::from_secs(5)).await.expect("fill");
    }
    Arc::new(tier)
}

/// The GET rate `redis-benchmark` prints, in requests per second, or why there is none.
fn redis_benchmark(port: u16, extra: &[&str]) -> Result<f64, String> {
    let out = Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-t", "get", "-n"])
        .arg(SUMMARY_REQUESTS.to_string())
        .arg("-q")
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("redis-benchmark not runnable: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    // `-q` prints "GET: 123456.79 requests per second, p50=..." after progress lines that
    // end in carriage returns.
    text.rsplit("GET: ")
        .next()
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("no GET rate in redis-benchmark's output: {text:?}"))
}

/// The median of `v` (NaN when `v` holds a NaN, i.e. a run that could not be measured).
fn median(mut v: Vec<f64>) -> f64 {
    if v.iter().any(|x| x.is_nan()) || v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() {
    let Some(server) = Server::start() else {
        println!("redis_tier bench: redis-server is not installed; nothing measured.");
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let single = rt.block_on(build(server.port, 1));
    let pooled = rt.block_on(build(server.port, 4));

    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let mut group = c.benchmark_group("redis_tier_get");
    group.throughput(Throughput::Elements(1));
    for (pool, tier) in [(1, &single), (4, &pooled)] {
        for in_flight in [1, IN_FLIGHT] {
            let id = BenchmarkId::new(format!("pool_{pool}"), format!("{in_flight}_in_flight"));
            group.bench_function(id, |b| {
                b.iter_custom(|iters| rt.block_on(gets(tier, iters, in_flight)));
            });
        }
    }
    group.finish();

    // The summary: our rates and redis-benchmark's, taken in alternating rounds on one server
    // so that load from other processes on the machine hits both sides alike; the medians and
    // the median of the per-round ratios are printed.
    let ours = |tier: &Arc<RedisTier>| {
        let took = rt.block_on(gets(tier, SUMMARY_REQUESTS, IN_FLIGHT));
        SUMMARY_REQUESTS as f64 / took.as_secs_f64()
    };
    let baselines: [(&str, &[&str]); 2] = [
        ("redis-benchmark -t get -q (50 clients, no pipelining)", &[]),
        (
            "redis-benchmark -t get -q -c 1 -P 64 (one connection, 64 pipelined)",
            &["-c", "1", "-P", "64"],
        ),
    ];
    let mut rounds: Vec<[f64; 4]> = Vec::new();
    for _ in 0..ROUNDS {
        let single_rate = ours(&single);
        let pooled_rate = ours(&pooled);
        let mut theirs = [f64::NAN; 2];
        for (slot, (what, extra)) in theirs.iter_mut().zip(baselines) {
            match redis_benchmark(server.port, extra) {
                Ok(rate) => *slot = rate,
                Err(e) => println!("{what}: {e}"),
            }
        }
        rounds.push([single_rate, pooled_rate, theirs[0], theirs[1]]);
    }
    let mut latencies: Vec<Duration> = rt.block_on(async {
        let mut v = Vec::with_capacity(20_000);
        for i in 0..20_000u64 {
            let start = Instant::now();
            let got = single.get(&key(i % KEYS), Instant::now() + Duration::from_secs(5)).await;
            v.push(start.elapsed());
            assert!(matches!(got, Ok(Some(_))), "every key is present");
        }
        v
    });
    latencies.sort_unstable();

    let col = |i: usize| median(rounds.iter().map(|r| r[i]).collect());
    let ratio =
        |ours: usize, theirs: usize| median(rounds.iter().map(|r| r[ours] / r[theirs]).collect());
    println!(
        "\n== Redis tier summary (one redis-server on loopback, {SUMMARY_REQUESTS} GETs per run, median of {ROUNDS} alternating rounds)"
    );
    println!(
        "RedisTier get, {IN_FLIGHT} in flight, 1 connection : {:>10.0} gets/s\n\
         RedisTier get, {IN_FLIGHT} in flight, 4 connections: {:>10.0} gets/s",
        col(0),
        col(1)
    );
    println!(
        "RedisTier get latency, 1 in flight: p50 {:?}  p99 {:?}  p999 {:?}",
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        percentile(&latencies, 0.999),
    );
    for (i, (what, _)) in baselines.iter().enumerate() {
        let theirs = col(2 + i);
        if theirs.is_nan() {
            continue;
        }
        println!(
            "{what}: {theirs:.0} req/s; RedisTier/redis-benchmark = {:.2} (1 connection), {:.2} (4 connections)",
            ratio(0, 2 + i),
            ratio(1, 2 + i)
        );
    }
    c.final_summary();
}
