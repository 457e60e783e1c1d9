//! A real `redis-server` for tests: one server, or a three-master cluster, on free loopback
//! ports in temporary directories, stopped (SIGKILL) on drop.
//!
//! When `redis-server` is not installed, [`RedisServer::start`] and [`RedisCluster::start`]
//! panic if the environment has `CI=true` (CI installs it, so its absence is a broken run),
//! and otherwise print a loud notice on stderr and return `None`; the calling test then
//! returns early. Install the Debian package `redis-server` to run these tests locally.

#![allow(dead_code, reason = "each test module uses a different part of the harness")]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a server may take to answer `PING` after it was started.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How many times a start is tried on a fresh port when the port was taken meanwhile.
const START_ATTEMPTS: usize = 5;

/// Whether `redis-server` can run here; panics under `CI=true` if it cannot.
pub(crate) fn redis_available(test: &str) -> bool {
    let found = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{test}: redis-server is not installed, and CI=true requires it (apt-get install redis-server)");
        }
        eprintln!(
            "\n**********************************************************************\n\
             * {test}: SKIPPED, redis-server is not installed.\n\
             * Install the Debian package redis-server to run the Redis tests;\n\
             * with CI=true this is a failure, not a skip.\n\
             **********************************************************************\n"
        );
    }
    found
}

/// A port on 127.0.0.1 that was free a moment ago (the OS picked it), and, when `bus` is set,
/// whose cluster-bus port (`port + 10000`) was free too.
pub(crate) fn free_port(bus: bool) -> u16 {
    for _ in 0..100 {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("bind a loopback port");
        if !bus {
            return port;
        }
        let Some(bus_port) = port.checked_add(10_000) else { continue };
        if TcpListener::bind((Ipv4Addr::LOCALHOST, bus_port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port pair found in 100 tries");
}

/// Sends `PING` over a raw socket and checks for `+PONG` (or `-NOAUTH`, which proves the
/// server is up even when it wants a password).
fn pings(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(n) => buf[..n].starts_with(b"+PONG") || buf[..n].starts_with(b"-NOAUTH"),
        Err(_) => false,
    }
}

/// One `redis-server` process on `127.0.0.1:port`, killed on drop.
pub(crate) struct RedisServer {
    port: u16,
    args: Vec<String>,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl RedisServer {
    /// A plain server, or `None` when redis-server is missing outside CI.
    pub(crate) fn start(test: &str) -> Option<RedisServer> {
        Self::start_with(test, &[])
    }

    /// A server with extra command-line options (`["--requirepass", "pw"]`).
    pub(crate) fn start_with(test: &str, args: &[&str]) -> Option<RedisServer> {
        if !redis_available(test) {
            return None;
        }
        Some(Self::spawn_fresh(args.iter().map(|a| a.to_string()).collect(), false))
    }

    fn spawn_fresh(args: Vec<String>, cluster: bool) -> RedisServer {
        let mut last = String::new();
        for _ in 0..START_ATTEMPTS {
            let dir = tempfile::tempdir().expect("temp dir for redis-server");
            let mut server =
                RedisServer { port: free_port(cluster), args: args.clone(), dir, child: None };
            match server.spawn() {
                Ok(()) => return server,
                // Most likely another process took the port between the probe and the
                // start; the next attempt picks another one.
                Err(e) => last = e,
            }
        }
        panic!("redis-server did not start in {START_ATTEMPTS} attempts: {last}");
    }

    /// Starts the process on `self.port` and waits until it answers `PING`.
    fn spawn(&mut self) -> Result<(), String> {
        let log = self.dir.path().join("redis.log");
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(&log)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd.spawn().map_err(|e| format!("spawn redis-server: {e}"))?;
        self.child = Some(child);
        let start = Instant::now();
        while start.elapsed() < START_TIMEOUT {
            if pings(self.port) {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    let tail = std::fs::read_to_string(&log).unwrap_or_default();
                    return Err(format!("exited with {status} on port {}: {tail}", self.port));
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        Err(format!("no PONG on port {} within {START_TIMEOUT:?}", self.port))
    }

    /// The server's port.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>/`.
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The server's working directory.
    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Kills the process (SIGKILL, as a crash would) and waits for it.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the process (SIGSTOP): connections stay open and the kernel still accepts new
    /// ones, but nothing is answered, as with a hung or overloaded server.
    pub(crate) fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a paused process run again (SIGCONT).
    pub(crate) fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        let child = self.child.as_ref().expect("the server is running");
        let status = Command::new("kill")
            .args([sig, &child.id().to_string()])
            .status()
            .unwrap_or_else(|e| panic!("kill {sig}: {e}"));
        assert!(status.success(), "kill {sig} failed");
    }

    /// Starts the server again on the same port (killing it first if it runs). Retries for a
    /// few seconds in case the port is briefly held after the old process died.
    pub(crate) fn restart(&mut self) {
        self.kill();
        let mut last = String::new();
        for _ in 0..START_ATTEMPTS {
            match self.spawn() {
                Ok(()) => return,
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        panic!("redis-server did not restart on port {}: {last}", self.port);
    }

    /// Runs `redis-cli -p <port> <args>` and returns its stdout; panics if it fails.
    pub(crate) fn cli(&self, args: &[&str]) -> String {
        cli(self.port, args)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `redis-cli -p <port> <args>` (killed after 30 s by coreutils `timeout`, so a wedged
/// server cannot hang a test) and returns its stdout; panics if it fails.
pub(crate) fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("timeout")
        .args(["30", "redis-cli", "-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("redis-cli {args:?}: {e}"));
    assert!(out.status.success(), "redis-cli {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Three masters on loopback joined into one cluster (no replicas).
pub(crate) struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts the three servers, creates the cluster and waits for `cluster_state:ok` on
    /// every node; `None` when redis-server is missing outside CI.
    pub(crate) fn start(test: &str) -> Option<RedisCluster> {
        if !redis_available(test) {
            return None;
        }
        let nodes: Vec<RedisServer> = (0..3)
            .map(|_| {
                let args = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
                    .iter()
                    .chain(&["--cluster-node-timeout", "5000"])
                    .map(|s| s.to_string())
                    .collect();
                RedisServer::spawn_fresh(args, true)
            })
            .collect();
        let addrs: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        let mut args = vec!["--cluster", "create"];
        args.extend(addrs.iter().map(String::as_str));
        args.extend(["--cluster-replicas", "0", "--cluster-yes"]);
        cli(nodes[0].port, &args);
        let cluster = RedisCluster { nodes };
        cluster.wait_ok();
        Some(cluster)
    }

    fn wait_ok(&self) {
        let start = Instant::now();
        loop {
            let ok =
                self.nodes.iter().all(|n| n.cli(&["cluster", "info"]).contains("cluster_state:ok"));
            if ok {
                return;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "cluster_state never became ok");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `redis://127.0.0.1:<port>/` for every node.
    pub(crate) fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// The nodes.
    pub(crate) fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// Where each node keeps its files.
    pub(crate) fn dirs(&self) -> Vec<PathBuf> {
        self.nodes.iter().map(|n| n.dir().to_path_buf()).collect()
    }
}
