//! Command-line flags of `cargo xtask stress`.

use std::path::PathBuf;

pub(crate) const USAGE: &str = "usage: cargo xtask stress [--secs N] [--threads T] \
[--tiers memory,disk,redis] [--wal always|interval|never|off] [--faults kill,torn,redis-down|none] \
[--report DIR]

Defaults: --secs 20, --threads = cores (at least 2), --tiers memory,disk, --wal interval,
--faults kill,torn (plus redis-down when the redis tier is on). Everything runs in a temporary
directory; the redis tier starts its own redis-server on a loopback port.";

/// Which tiers the tiered workload stacks, top to bottom.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Tiers {
    pub(crate) disk: bool,
    pub(crate) redis: bool,
}

/// The write-ahead log's sync policy for the durable workload; `Off` runs without it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WalMode {
    Always,
    Interval,
    Never,
    Off,
}

impl WalMode {
    pub(crate) fn name(self) -> &'static str {
        match self {
            WalMode::Always => "always",
            WalMode::Interval => "interval",
            WalMode::Never => "never",
            WalMode::Off => "off",
        }
    }

    pub(crate) fn parse(s: &str) -> Result<Self, String> {
        match s {
            "always" => Ok(WalMode::Always),
            "interval" => Ok(WalMode::Interval),
            "never" => Ok(WalMode::Never),
            "off" => Ok(WalMode::Off),
            other => Err(format!("--wal {other}: expected always, interval, never or off")),
        }
    }
}

/// The faults to inject.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Faults {
    pub(crate) kill: bool,
    pub(crate) torn: bool,
    pub(crate) redis_down: bool,
}

impl Faults {
    pub(crate) fn names(self) -> String {
        let names: Vec<&str> =
            [(self.kill, "kill"), (self.torn, "torn"), (self.redis_down, "redis-down")]
                .into_iter()
                .filter_map(|(on, n)| on.then_some(n))
                .collect();
        if names.is_empty() {
            "none".into()
        } else {
            names.join(",")
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Args {
    pub(crate) secs: u64,
    pub(crate) threads: usize,
    pub(crate) tiers: Tiers,
    pub(crate) wal: WalMode,
    pub(crate) faults: Faults,
    pub(crate) report: Option<PathBuf>,
    /// Internal: run as the durable-cache child process in this directory.
    pub(crate) child: Option<PathBuf>,
    pub(crate) seed: u64,
    /// Internal, for the job's own test: after each kill, remove one acknowledged key
    /// behind the ledger's back, so that the check must report a loss.
    pub(crate) inject_loss: bool,
}

impl Args {
    pub(crate) fn tier_names(&self) -> String {
        let mut names = vec!["memory"];
        if self.tiers.disk {
            names.push("disk");
        }
        if self.tiers.redis {
            names.push("redis");
        }
        names.join(",")
    }
}

pub(crate) fn parse(args: impl IntoIterator<Item = String>) -> Result<Args, String> {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut a = Args {
        secs: 20,
        threads: cores.max(2),
        tiers: Tiers { disk: true, redis: false },
        wal: WalMode::Interval,
        faults: Faults::default(),
        report: None,
        child: None,
        seed: 0x5EED,
        inject_loss: false,
    };
    let mut faults: Option<String> = None;
    let mut it = args.into_iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--secs" => a.secs = value()?.parse().map_err(|e| format!("--secs: {e}"))?,
            "--threads" => a.threads = value()?.parse().map_err(|e| format!("--threads: {e}"))?,
            "--tiers" => a.tiers = parse_tiers(&value()?)?,
            "--wal" => a.wal = WalMode::parse(&value()?)?,
            "--faults" => faults = Some(value()?),
            "--report" => a.report = Some(value()?.into()),
            "--child" => a.child = Some(value()?.into()),
            "--seed" => a.seed = value()?.parse().map_err(|e| format!("--seed: {e}"))?,
            "--inject-loss" => a.inject_loss = true,
            "--help" | "-h" => return Err(String::new()),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if a.secs == 0 || a.secs > 24 * 3600 {
        return Err(format!("--secs {}: must be 1..=86400", a.secs));
    }
    if a.threads == 0 || a.threads > 1024 {
        return Err(format!("--threads {}: must be 1..=1024", a.threads));
    }
    a.faults = match faults.as_deref() {
        None => Faults {
            kill: a.wal != WalMode::Off,
            torn: a.wal != WalMode::Off,
            redis_down: a.tiers.redis,
        },
        Some(list) => parse_faults(list)?,
    };
    if a.wal == WalMode::Off && (a.faults.kill || a.faults.torn) {
        return Err("--faults kill and torn exercise the write-ahead log: they need --wal always, interval or never".into());
    }
    if a.faults.redis_down && !a.tiers.redis {
        return Err("--faults redis-down needs the redis tier (--tiers memory,redis)".into());
    }
    Ok(a)
}

fn parse_tiers(list: &str) -> Result<Tiers, String> {
    let mut t = Tiers::default();
    let mut memory = false;
    for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match name {
            "memory" => memory = true,
            "disk" => t.disk = true,
            "redis" => t.redis = true,
            other => return Err(format!("--tiers: unknown tier {other} (memory, disk, redis)")),
        }
    }
    if !memory {
        return Err("--tiers: the memory tier is always the top tier; name it first".into());
    }
    Ok(t)
}

fn parse_faults(list: &str) -> Result<Faults, String> {
    let mut f = Faults::default();
    for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match name {
            "none" => {}
            "kill" => f.kill = true,
            "torn" => f.torn = true,
            "redis-down" => f.redis_down = true,
            other => {
                return Err(format!(
                    "--faults: unknown fault {other} (kill, torn, redis-down, none)"
                ))
            }
        }
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Args, String> {
        parse(s.split_whitespace().map(String::from))
    }

    #[test]
    fn defaults_are_the_embedded_configuration() {
        let a = p("").unwrap();
        assert_eq!(a.tiers, Tiers { disk: true, redis: false });
        assert_eq!(a.wal, WalMode::Interval);
        assert_eq!(a.faults, Faults { kill: true, torn: true, redis_down: false });
        let a = p("--tiers memory,disk,redis").unwrap();
        assert!(a.faults.redis_down);
    }

    #[test]
    fn bad_flags_are_clear_errors() {
        assert!(p("--secs 0").unwrap_err().contains("--secs"));
        assert!(p("--tiers disk").unwrap_err().contains("memory"));
        assert!(p("--tiers memory,tape").unwrap_err().contains("tape"));
        assert!(p("--wal sometimes").unwrap_err().contains("sometimes"));
        assert!(p("--wal off --faults kill").unwrap_err().contains("kill"));
        assert!(p("--faults redis-down").unwrap_err().contains("redis"));
        assert!(p("--threads").unwrap_err().contains("needs a value"));
    }
}
