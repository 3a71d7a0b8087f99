//! The harness around the cases: every run of a case is a child process (the bench
//! executable re-run with `--case ...`, or the Go peer) that prints one `result ...` line;
//! the parent runs it with a time limit and reads that line.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Clock ticks per second of `/proc/self/stat` (`sysconf(_SC_CLK_TCK)`, 100 on Linux).
const CLK_TCK: f64 = 100.0;

/// What one run of a case measured: the fields every `result` line has.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    /// Wall time of the scenario (set-up excluded).
    pub secs: f64,
    /// Bytes (bulk) or operations (rr, idle).
    pub units: u64,
    /// User + system CPU seconds of the process during the scenario.
    pub cpu: f64,
    /// Peak resident set size of the process, KiB.
    pub hwm_kib: u64,
}

impl Sample {
    /// Parses a line `result secs=S units=U cpu=C hwm_kib=M ...` (other fields are ignored).
    pub fn parse(line: &str) -> Option<Sample> {
        let fields = result_fields(line)?;
        Some(Sample {
            secs: fields.get("secs")?.parse().ok()?,
            units: fields.get("units")?.parse().ok()?,
            cpu: fields.get("cpu")?.parse().ok()?,
            hwm_kib: fields.get("hwm_kib")?.parse().ok()?,
        })
    }

    /// The `result` line of this sample.
    pub fn line(&self) -> String {
        format!(
            "result secs={:.6} units={} cpu={:.3} hwm_kib={}",
            self.secs, self.units, self.cpu, self.hwm_kib
        )
    }
}

/// The `key=value` fields of a `result` line.
pub fn result_fields(line: &str) -> Option<BTreeMap<&str, &str>> {
    Some(
        line.strip_prefix("result ")?
            .split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .collect(),
    )
}

// ------------------------------------------------------------------------------------------------
// Process measurements

/// User + system CPU seconds of this process so far.
pub fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("read /proc/self/stat");
    // Fields after the command name (which may hold spaces) start with field 3, `state`;
    // utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')').expect("stat format") + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    ticks as f64 / CLK_TCK
}

/// A `kB` field of `/proc/self/status` (`VmHWM`, `VmRSS`).
pub fn status_kib(key: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key} in /proc/self/status"))
}

// ------------------------------------------------------------------------------------------------
// Child processes

/// How a child ended.
pub enum Outcome {
    /// It printed a `result` line and exited with success: the sample and the whole line.
    Done(Sample, String),
    /// It failed, hung (killed at the time limit) or printed no result: why, with the end of
    /// its output.
    Failed(String),
}

/// Runs `cmd`, kills it after `timeout`, and parses its `result` line.
pub fn run_child(mut cmd: Command, timeout: Duration) -> Outcome {
    let mut child = match cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => return Outcome::Failed(format!("cannot start {cmd:?}: {e}")),
    };
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Err(e) => return Outcome::Failed(format!("waiting for {cmd:?}: {e}")),
        }
    };
    let out = out_reader.join().unwrap_or_default();
    let err = err_reader.join().unwrap_or_default();
    let tail = |s: &str| {
        s.lines()
            .rev()
            .take(12)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    };
    match status {
        None => Outcome::Failed(format!("killed after {timeout:?}\n{}", tail(&err))),
        Some(status) if !status.success() => {
            Outcome::Failed(format!("{status}\n{}\n{}", tail(&out), tail(&err)))
        }
        Some(_) => match out
            .lines()
            .find_map(|l| Some((Sample::parse(l)?, l.to_owned())))
        {
            Some((sample, line)) => Outcome::Done(sample, line),
            None => Outcome::Failed(format!("no result line\n{}\n{}", tail(&out), tail(&err))),
        },
    }
}

/// The `main` of a bench whose cases run in child processes: with `--case`, `child` runs one
/// case on the arguments after it; otherwise `parent` runs the cases, and the process exits
/// with status 1 if it returns `false` (a case failed).
pub fn main(child: fn(&[String]), parent: fn(&[String]) -> bool) {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = args.iter().position(|a| a == "--case") {
        child(&args[i + 1..]);
        return;
    }
    if !parent(&args) {
        std::process::exit(1);
    }
}

/// The Go peer's executable (built on first use), or why the Go columns are skipped (also
/// printed as a notice).
pub fn go_peer() -> Result<PathBuf, String> {
    match go_available() {
        Ok(()) => Ok(smux_interop::go::peer_binary(env!("CARGO_TARGET_TMPDIR")).to_path_buf()),
        Err(why) => {
            println!(
                "NOTICE: {why}: the Go smux columns are skipped (install the Debian packages \
                 golang-go and golang-github-xtaci-smux-dev to measure them)"
            );
            Err(why)
        }
    }
}

/// Whether the Go toolchain and Go smux (Debian packages) are installed.
fn go_available() -> Result<(), String> {
    let smux =
        Path::new(smux_interop::go::DEBIAN_GOPATH).join("src/github.com/xtaci/smux/session.go");
    let go = std::env::var_os("GO").unwrap_or_else(|| "go".into());
    match Command::new(&go).arg("version").output() {
        Ok(out) if out.status.success() => {}
        _ => return Err("the Go toolchain (`go`) is not installed".into()),
    }
    if !smux.is_file() {
        return Err(format!(
            "Go smux is not installed ({} is missing)",
            smux.display()
        ));
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------------
// Options and numbers

/// A whole number from the environment variable `name`, if set.
///
/// # Panics
///
/// If it is set to something else.
pub fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(
        v.trim()
            .parse()
            .unwrap_or_else(|e| panic!("{name}={v}: {e}")),
    )
}

/// The filter words: the comma-separated list in the environment variable `var`, and the
/// positional arguments (`cargo bench --bench NAME -- tokio`; flags that cargo or other tools
/// pass are ignored).
pub fn filters(var: &str, args: &[String]) -> Vec<String> {
    let mut filters: Vec<String> = std::env::var(var)
        .unwrap_or_default()
        .split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    filters.extend(args.iter().filter(|a| !a.starts_with('-')).cloned());
    filters
}

/// The median of `v` (not empty).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// A number for a table: thousands grouped, three significant digits below 1000.
pub fn fmt_value(v: f64) -> String {
    if v >= 1000.0 {
        let digits = (v.round() as u64).to_string();
        let head = digits.len() % 3;
        let mut groups: Vec<&str> = Vec::new();
        if head > 0 {
            groups.push(&digits[..head]);
        }
        groups.extend(
            digits.as_bytes()[head..]
                .chunks(3)
                .map(|g| std::str::from_utf8(g).expect("ascii digits")),
        );
        groups.join(",")
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}
