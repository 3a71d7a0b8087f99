//! Link benchmark: the multiplexers over an emulated path (round-trip time, bottleneck rate
//! and queue) instead of bare loopback. The path is `smux_test_support::netem`, a TCP relay
//! on 127.0.0.1 between the client's and the server's socket.
//!
//! `cargo bench -p smux-benches --bench link` runs every case and prints a markdown table per
//! scenario, then draws the interactive scenarios into `benches/link-chart.svg`; see
//! `benches/README.md` ("link") for the cases and the environment variables
//! (`SMUX_LINK_SMOKE=1` for a short run, `SMUX_LINK_FILTER=inter1/tokio-v2` for a subset).
//!
//! Scenarios: `bulk1` / `bulk8` (32 MiB client → server over 1 / 8 streams, on 4 paths) and
//! `inter1` / `inter8` (a 1-byte request/reply every 50 ms beside 1 / 8 downloads, RTT 40 ms
//! at 100 Mbit/s). Columns: ours on tokio and on smol (v1, v2), Go smux (v1, v2), async_smux
//! 0.4 and yamux 0.14, each also with `TCP_NOTSENT_LOWAT` = 16 KiB on both sockets (`+lowat`);
//! then the mixed pairs, ours on tokio against Go smux on the 40 ms, 100 Mbit/s path
//! (`tokio-v2>go`: ours the client; `go>tokio-v2`: Go the client).
//!
//! Every run of a case is a fresh child process (this executable re-run with `--case`),
//! killed at a time limit: a case that hangs is reported as a hang, never retried. Client,
//! server and relay are in that process; the Go cases run the Go peer (`interop/go-peer`,
//! `-mode bench -via -`) from it, with the relay in the child, and the mixed cases run one end
//! in the child and the other in the Go peer (`-mode bench -role server|client`).

mod common;

#[path = "link/cases.rs"]
mod cases;
#[path = "link/chart.rs"]
mod chart;
#[path = "link/mixed.rs"]
mod mixed;
#[path = "link/report.rs"]
mod report;
#[path = "link/run.rs"]
mod run;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use cases::{matches, Case, LinkPath, Params, Peer, Scenario, MANY};
use common::harness::{env_u64, run_child, Outcome};
use report::{Failure, Results};
use run::LinkResult;

/// Without `--bench` on the command line (`cargo test --benches`), only these run (smoke
/// sizes) unless `SMUX_LINK_FILTER` says otherwise.
const TEST_FILTER: [&str; 2] = [
    "bulk1/tokio-v2/40ms-100mbit",
    "inter1/tokio-v2/40ms-100mbit",
];

struct Options {
    params: Params,
    reps: usize,
    smoke: bool,
    filters: Vec<String>,
    chart: PathBuf,
}

fn options(args: &[String]) -> Options {
    // `cargo test --benches` runs this without `--bench`: a smoke run of a few cases then.
    let under_test = !args.iter().any(|a| a == "--bench");
    let smoke = under_test
        || args.iter().any(|a| a == "--smoke")
        || std::env::var("SMUX_LINK_SMOKE").is_ok_and(|v| !v.is_empty() && v != "0");
    let mut params = if smoke {
        Params {
            bytes: 1 << 20,
            warmup: Duration::from_millis(300),
            measure: Duration::from_secs(1),
        }
    } else {
        Params {
            bytes: 32 << 20,
            warmup: Duration::from_secs(2),
            measure: Duration::from_secs(8),
        }
    };
    if let Some(b) = env_u64("SMUX_LINK_BYTES") {
        params.bytes = b.max(MANY as u64) / MANY as u64 * MANY as u64;
    }
    let reps = env_u64("SMUX_LINK_REPS").map_or(1, |r| r.max(1) as usize);
    let mut filters = common::harness::filters("SMUX_LINK_FILTER", args);
    if filters.is_empty() && under_test {
        filters = TEST_FILTER.map(String::from).to_vec();
    }
    let chart = match std::env::var_os("SMUX_LINK_CHART") {
        Some(path) => PathBuf::from(path),
        // A smoke run does not overwrite the chart of a real one.
        None if smoke => Path::new(env!("CARGO_TARGET_TMPDIR")).join("link-chart-smoke.svg"),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("link-chart.svg"),
    };
    Options {
        params,
        reps,
        smoke,
        filters,
        chart,
    }
}

/// The command line that reproduces this run (the `SMUX_LINK_*` variables set, the filters
/// given as arguments).
fn command_line(args: &[String]) -> String {
    let mut vars: Vec<String> = std::env::vars()
        .filter(|(k, _)| k.starts_with("SMUX_LINK_"))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    vars.sort();
    let mut line = vars.join(" ");
    if !line.is_empty() {
        line.push(' ');
    }
    line.push_str("cargo bench -p smux-benches --bench link");
    let positional: Vec<&str> = args
        .iter()
        .filter(|a| !a.starts_with('-'))
        .map(String::as_str)
        .collect();
    if !positional.is_empty() {
        line.push_str(" -- ");
        line.push_str(&positional.join(" "));
    }
    line
}

/// How long a run of `case` may take before it counts as a hang: generous, since the
/// slowest peers move a bulk case at a few hundred KB/s on the 200 ms path.
fn time_limit(case: Case, p: Params) -> Duration {
    if case.scenario.is_bulk() {
        Duration::from_secs(60 + p.bytes / 100_000)
    } else {
        p.warmup + p.measure + Duration::from_secs(90)
    }
}

fn case_command(case: Case, p: Params, go: Option<&Path>) -> Command {
    let mut cmd = Command::new(std::env::current_exe().expect("current_exe"));
    cmd.arg("--case")
        .arg(case.scenario.key())
        .arg(case.peer.key())
        .arg(case.path.key())
        .arg(p.bytes.to_string())
        .arg(p.warmup.as_millis().to_string())
        .arg(p.measure.as_millis().to_string());
    if let (true, Some(go)) = (case.peer.imp.needs_go(), go) {
        cmd.arg(go);
    }
    cmd
}

/// A line of progress for a finished run.
fn progress(case: Case, r: &LinkResult) -> String {
    let mb_s = r.sample.units as f64 / r.sample.secs / 1e6;
    let share = mb_s * 1e6 / case.path.rate() * 100.0;
    if case.scenario.is_bulk() {
        format!("{mb_s:.2} MB/s ({share:.0} % of the link)")
    } else {
        let mut lat = r.lat_us.clone();
        lat.sort_unstable();
        let at = |q: f64| {
            let rank = ((q * lat.len() as f64).ceil() as usize).clamp(1, lat.len().max(1));
            lat.get(rank - 1).map_or(f64::NAN, |&us| us as f64 / 1e3)
        };
        format!(
            "p50 {:.1} ms, p99 {:.1} ms ({} round trips), download {mb_s:.2} MB/s ({share:.0} %)",
            at(0.5),
            at(0.99),
            lat.len()
        )
    }
}

fn parent(args: &[String]) -> bool {
    let o = options(args);
    let selected: Vec<Case> = Case::all()
        .into_iter()
        .filter(|c| {
            let key = c.key();
            o.filters.is_empty() || o.filters.iter().any(|f| matches(&key, f))
        })
        .collect();
    eprintln!(
        "link: {} cases x {} run{}; {} bytes per bulk case, interactive: {:?} warm-up, {:?} \
         measured{}",
        selected.len(),
        o.reps,
        if o.reps == 1 { "" } else { "s" },
        o.params.bytes,
        o.params.warmup,
        o.params.measure,
        if o.smoke { " (smoke)" } else { "" }
    );
    let mut results = Results {
        selected: selected.clone(),
        ..Results::default()
    };
    let mut go_bin: Option<PathBuf> = None;
    if selected.iter().any(|c| c.peer.imp.needs_go()) {
        match common::harness::go_peer() {
            Ok(path) => go_bin = Some(path),
            Err(why) => results.go_skipped = Some(why),
        }
    }
    let started = Instant::now();
    // Run-major order, as the e2e bench: the repetitions of a case are spread over the run.
    for rep in 1..=o.reps {
        for &case in &selected {
            if case.peer.imp.needs_go() && go_bin.is_none() {
                continue;
            }
            if results.failed.contains_key(&case) {
                continue;
            }
            let key = case.key();
            let limit = time_limit(case, o.params);
            let cmd = case_command(case, o.params, go_bin.as_deref());
            match run_child(cmd, limit) {
                Outcome::Done(_, line) => match LinkResult::parse(&line) {
                    Some(r) => {
                        eprintln!(
                            "  [{:>6.1}s] run {rep}/{} {key:<36} {}",
                            started.elapsed().as_secs_f64(),
                            o.reps,
                            progress(case, &r)
                        );
                        results.runs.entry(case).or_default().push(r);
                    }
                    None => {
                        let why = format!("unreadable result line: {line}");
                        eprintln!("  run {rep}/{} {key}: FAILED: {why}", o.reps);
                        results.failed.insert(case, Failure::Failed(why));
                    }
                },
                Outcome::Failed(why) => {
                    let failure = if why.starts_with("killed after") {
                        Failure::Hang(why)
                    } else {
                        Failure::Failed(why)
                    };
                    eprintln!(
                        "  run {rep}/{} {key}: {}\n{}",
                        o.reps,
                        failure.headline(),
                        failure.details()
                    );
                    results.failed.insert(case, failure);
                }
            }
        }
    }
    let command = command_line(args);
    println!();
    println!(
        "## smux link benchmark (user-space link emulator: smux_test_support::netem; 128 KiB \
         bottleneck queue, 64 KiB relay socket buffers)"
    );
    report::print_tables(&results, o.params, o.reps, o.smoke, &command);
    match chart::write(&results, &o.chart, &command) {
        Ok(true) => println!("\nchart: {}", o.chart.display()),
        Ok(false) => {}
        Err(e) => println!("\nchart: cannot write {}: {e}", o.chart.display()),
    }
    println!(
        "\n({} cases in {:.0} s)",
        selected.len(),
        started.elapsed().as_secs_f64()
    );
    results.failed.is_empty()
}

fn child(args: &[String]) {
    let usage = "--case SCENARIO PEER PATH BYTES WARMUP_MS MEASURE_MS [GO_PEER]";
    let get = |i: usize| {
        args.get(i)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("usage: {usage}"))
    };
    let num = |i: usize| -> u64 { get(i).parse().unwrap_or_else(|e| panic!("{usage}: {e}")) };
    let case = Case {
        scenario: Scenario::parse(get(0)).unwrap_or_else(|| panic!("unknown scenario {}", get(0))),
        peer: Peer::parse(get(1)).unwrap_or_else(|| panic!("unknown peer {}", get(1))),
        path: LinkPath::parse(get(2)).unwrap_or_else(|| panic!("unknown path {}", get(2))),
    };
    let p = Params {
        bytes: num(3),
        warmup: Duration::from_millis(num(4)),
        measure: Duration::from_millis(num(5)),
    };
    let go = args.get(6).map(Path::new);
    println!("{}", run::run_case(case, p, go));
    // Skip the teardown of whatever the case still runs (the endless downloads).
    std::process::exit(0);
}

fn main() {
    common::harness::main(child, parent);
}
