//! Serves a real Strata cache's metrics in the Prometheus text format on 127.0.0.1 while a
//! workload runs against the cache, so the figures change between scrapes.
//!
//! ```text
//! cargo run -p strata --example serve_prometheus -- [--port P] [--requests N] [--seconds T] [--self-check]
//! curl http://127.0.0.1:P/metrics
//! ```
//!
//! The server is bounded: it exits after `N` requests (default 10) or `T` seconds (default
//! 30), whichever comes first. `--port 0` (the default) picks a free port and prints it.
//! `--self-check` scrapes the endpoint twice itself and fails unless
//! `strata_cache_hits_total{cache="users"}` grew in between, for use in CI.
//!
//! The workload reads skewed keys from a cache of 5,000 entries with a 2 s time to live; a
//! miss loads the value through `try_get_with` (a short sleep standing in for a backend, one
//! load in fifty failing), and one operation in a hundred removes a key. So every series
//! moves: hits, misses, inserts, updates, removals, evictions by size and by expiry, loads of
//! both outcomes with their latency, entries and weighted size.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};
use strata::metrics::{Registry, CONTENT_TYPE};
use strata::Cache;

/// The largest request head read; anything longer is answered 431 and closed.
const MAX_REQUEST_HEAD: usize = 8 * 1024;

/// The cache's name, the value of the `cache` label on its series.
const CACHE_NAME: &str = "users";

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

/// xorshift64*: a tiny deterministic generator, enough for a workload.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A key in `0..n`, log-uniform (`n^u - 1` for a uniform `u`), so a small hot set gets
    /// most of the reads (four in ten land below 100 of 50,000) and a long tail misses.
    fn skewed_key(&mut self, n: u64) -> u64 {
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        ((n as f64).powf(u) as u64).saturating_sub(1).min(n - 1)
    }
}

/// Stands in for a backend: a short sleep, and one call in fifty fails.
fn load_from_backend(key: u64, rng: &mut Rng) -> Result<String, String> {
    thread::sleep(Duration::from_micros(50 + rng.next() % 200));
    if rng.next() % 50 == 0 {
        Err(format!("backend timed out on {key}"))
    } else {
        Ok(format!("user-{key}"))
    }
}

/// Runs operations against `cache` until `stop` is set, in batches with a short pause so it
/// stays cheap and the scrapes see a steady stream of changes.
fn workload(cache: Cache<u64, String>, stop: Arc<AtomicBool>) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|e| format!("cannot start the workload's runtime: {e}"))?;
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..500 {
            let key = rng.skewed_key(50_000);
            match rng.next() % 100 {
                0 => {
                    cache.remove(&key);
                }
                1 => cache.insert(key, format!("user-{key}-v2")),
                _ => {
                    // A hit returns at once; a miss loads (and counts one miss, one load).
                    let mut backend = Rng(rng.next() | 1);
                    // A failed load is counted by the cache; the workload just moves on.
                    let _ = runtime
                        .block_on(cache.try_get_with(key, async move {
                            load_from_backend(key, &mut backend)
                        }));
                }
            }
        }
        thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// Reads the request head (bounded in size and time) and writes one response.
fn serve_one(mut stream: TcpStream, cache: &Cache<u64, String>) -> std::io::Result<()> {
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
            respond(&mut stream, "200 OK", CONTENT_TYPE, &cache.render_prometheus())
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

/// Fetches `/metrics` from `addr` and returns the value of the cache's hit counter.
fn scrape_hits(addr: SocketAddr) -> Result<u64, String> {
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut text = String::new();
    s.read_to_string(&mut text).map_err(|e| e.to_string())?;
    let needle = format!("strata_cache_hits_total{{cache=\"{CACHE_NAME}\"}} ");
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix(needle.as_str()))
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
    // A registry of its own here; a service would share one between its caches, tiers and
    // WAL and serve it whole.
    let registry = Arc::new(Registry::new());
    let cache: Cache<u64, String> = Cache::builder()
        .max_capacity(5_000)
        .time_to_live(Duration::from_secs(2))
        .metrics(Arc::clone(&registry), CACHE_NAME)
        .build()
        .map_err(|e| e.to_string())?;
    let stop = Arc::new(AtomicBool::new(false));
    let worker = {
        let (cache, stop) = (cache.clone(), Arc::clone(&stop));
        thread::spawn(move || workload(cache, stop))
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
                if let Err(e) = serve_one(stream, &cache) {
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
    worker.join().map_err(|_| "the workload thread panicked")??;
    let s = cache.stats();
    println!(
        "served {served} requests; cache: {} hits, {} misses (hit ratio {:.3}), {} loads ({} failed), {} evicted, {} expired",
        s.hits,
        s.misses,
        s.hit_ratio(),
        s.loads_ok + s.loads_failed,
        s.loads_failed,
        s.evictions,
        s.expirations
    );

    if let Some(checker) = checker {
        let (first, second) = checker.join().map_err(|_| "self-check thread panicked")??;
        println!("self-check: strata_cache_hits_total went from {first} to {second}");
        if second <= first {
            return Err("the hit counter did not change between scrapes".to_owned());
        }
    }
    Ok(())
}
