//! Serves Strata's metrics in the Prometheus text format on 127.0.0.1 while a synthetic
//! workload updates them, so the figures change between scrapes.
//!
//! ```text
//! cargo run -p strata-metrics --example serve_prometheus -- [--port P] [--requests N] [--seconds T] [--self-check]
//! curl http://127.0.0.1:P/metrics
//! ```
//!
//! The server is bounded: it exits after `N` requests (default 10) or `T` seconds (default 30),
//! whichever comes first. `--port 0` (the default) picks a free port and prints it.
//! `--self-check` scrapes the endpoint twice itself and fails unless the hit counter grew, for
//! use in CI.
//!
//! The workload is synthetic (an 80 % hit ratio against an imaginary cache, with load,
//! tier and WAL latencies drawn from skewed distributions), so that every family of the
//! catalogue, tiers and WAL included, has figures. For a real cache's metrics, run the facade
//! crate's example, `cargo run -p strata --example serve_prometheus -- --self-check` (it
//! lives there because this crate cannot depend on strata-core, which depends on it).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};
use strata_metrics::{
    CacheMetrics, CircuitState, EvictionCause, Registry, TierMetrics, WalMetrics, CONTENT_TYPE,
};

/// The largest request head read; anything longer is answered 431 and closed.
const MAX_REQUEST_HEAD: usize = 8 * 1024;

struct Args {
    port: u16,
    requests: u64,
    seconds: u64,
    self_check: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args { port: 0, requests: 10, seconds: 30, self_check: false };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut number = |name: &str| -> Result<u64, String> {
            let v = it.next().ok_or_else(|| format!("{name} needs a value"))?;
            v.parse().map_err(|_| format!("{name} expects a non-negative integer, got {v:?}"))
        };
        match flag.as_str() {
            "--port" => {
                args.port =
                    u16::try_from(number("--port")?).map_err(|_| "--port is at most 65535")?;
            }
            "--requests" => args.requests = number("--requests")?,
            "--seconds" => args.seconds = number("--seconds")?,
            "--self-check" => args.self_check = true,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if args.requests == 0 || args.seconds == 0 {
        return Err("--requests and --seconds must be at least 1".to_owned());
    }
    Ok(args)
}

/// xorshift64*: a tiny deterministic generator, enough for a synthetic workload.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A skewed latency: mostly near `base`, with a long tail up to `base * 2^tail_bits`.
    fn latency(&mut self, base_ns: u64, tail_bits: u32) -> Duration {
        let r = self.next();
        let shift = (r % u64::from(tail_bits + 1)).min(r.leading_zeros().into()) as u32;
        Duration::from_nanos(base_ns + (r >> 40) % base_ns.max(1) * (1u64 << shift))
    }
}

/// Updates the metrics until `stop` is set, pausing briefly every batch so it stays cheap.
fn workload(
    cache: CacheMetrics,
    tier: TierMetrics,
    wal: WalMetrics,
    size: Arc<AtomicI64>,
    stop: Arc<AtomicBool>,
) {
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    let mut entries: i64 = 0;
    let capacity = 10_000;
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..1_000 {
            // About 80 % of lookups hit, as a hot key set in front of a cold tail would.
            if rng.next() % 100 < 80 {
                cache.hits.incr();
                continue;
            }
            cache.misses.incr();
            let from_tier = rng.next() % 3 != 0;
            if from_tier {
                tier.hits.incr();
                tier.promotions.incr();
                tier.get.duration.record_duration(rng.latency(150_000, 6));
            } else {
                tier.misses.incr();
                let failed = rng.next() % 50 == 0;
                cache.record_load(!failed, rng.latency(2_000_000, 5));
                if rng.next() % 200 == 0 {
                    tier.get.timeouts.incr();
                }
            }
            cache.inserts.incr();
            wal.record_append(48 + rng.next() % 200);
            if entries < capacity {
                entries += 1;
            } else {
                let cause =
                    if rng.next() % 4 == 0 { EvictionCause::Expired } else { EvictionCause::Size };
                cache.record_eviction(cause);
            }
        }
        wal.fsync_duration.record_duration(rng.latency(400_000, 4));
        // The imaginary cache tracks its size; the registry reads it at scrape time.
        size.store(entries, Ordering::Relaxed);
        tier.writeback_queue_depth.set((rng.next() % 64) as i64);
        tier.set_circuit_state(if rng.next() % 100 == 0 {
            CircuitState::HalfOpen
        } else {
            CircuitState::Closed
        });
        thread::sleep(Duration::from_millis(5));
    }
}

/// Reads the request head (bounded in size and time) and writes one response.
fn serve_one(mut stream: TcpStream, registry: &Registry) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() > MAX_REQUEST_HEAD {
            return respond(
                &mut stream,
                "431 Request Header Fields Too Large",
                "text/plain",
                "too large\n",
            );
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&head);
    let mut parts = head.lines().next().unwrap_or_default().split_whitespace();
    match (parts.next(), parts.next()) {
        (Some("GET"), Some("/metrics" | "/")) => {
            respond(&mut stream, "200 OK", CONTENT_TYPE, &registry.render_prometheus())
        }
        (Some("GET"), _) => respond(&mut stream, "404 Not Found", "text/plain", "try /metrics\n"),
        _ => respond(&mut stream, "405 Method Not Allowed", "text/plain", "GET only\n"),
    }
}

fn respond(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &str,
) -> std::io::Result<()> {
    let header = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(header.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    stream.flush()
}

/// Fetches `/metrics` from `addr` and returns the value of the `users` cache's hit counter.
fn scrape_hits(addr: SocketAddr) -> Result<u64, String> {
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut text = String::new();
    s.read_to_string(&mut text).map_err(|e| e.to_string())?;
    let needle = "strata_cache_hits_total{cache=\"users\"} ";
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix(needle))
        .ok_or("no hit counter in the response")?;
    line.trim().parse().map_err(|_| format!("bad counter value {line:?}"))
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("serve_prometheus: {e}\nusage: serve_prometheus [--port P] [--requests N] [--seconds T] [--self-check]");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("serve_prometheus: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), String> {
    let registry = Arc::new(Registry::new());
    let cache = CacheMetrics::register(&registry, "users").map_err(|e| e.to_string())?;
    let tier = TierMetrics::register(&registry, "redis").map_err(|e| e.to_string())?;
    let wal = WalMetrics::register(&registry, "main").map_err(|e| e.to_string())?;
    let size = Arc::new(AtomicI64::new(0));
    let (s1, s2) = (Arc::clone(&size), Arc::clone(&size));
    CacheMetrics::register_size_gauges(
        &registry,
        "users",
        Arc::new(move || s1.load(Ordering::Relaxed)),
        // Every entry of the imaginary cache weighs three units.
        Arc::new(move || s2.load(Ordering::Relaxed) * 3),
    )
    .map_err(|e| e.to_string())?;
    let stop = Arc::new(AtomicBool::new(false));
    let worker = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || workload(cache, tier, wal, size, stop))
    };

    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, args.port)).map_err(|e| format!("bind: {e}"))?;
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    println!(
        "serving http://{addr}/metrics for at most {} requests or {} s",
        args.requests, args.seconds
    );

    let checker = args.self_check.then(|| {
        thread::spawn(move || -> Result<(u64, u64), String> {
            let first = scrape_hits(addr)?;
            thread::sleep(Duration::from_millis(300));
            Ok((first, scrape_hits(addr)?))
        })
    });

    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let mut served = 0u64;
    while served < args.requests && Instant::now() < deadline {
        if checker.as_ref().is_some_and(|c| c.is_finished()) {
            break;
        }
        match listener.accept() {
            Ok((stream, _)) => {
                served += 1;
                if let Err(e) = serve_one(stream, &registry) {
                    eprintln!("request {served}: {e}");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(10));
            }
            Err(e) => eprintln!("accept: {e}"),
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = worker.join();
    println!("served {served} requests");

    if let Some(checker) = checker {
        let (first, second) = checker.join().map_err(|_| "self-check thread panicked")??;
        println!("self-check: strata_cache_hits_total went from {first} to {second}");
        if second <= first {
            return Err("the hit counter did not change between scrapes".to_owned());
        }
    }
    Ok(())
}
