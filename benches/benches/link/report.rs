//! The results of a run and their markdown tables: one table per scenario.

use std::collections::BTreeMap;

use crate::cases::{Case, LinkPath, Params, Peer, Scenario, MANY, SCENARIOS};
use crate::common::harness::{fmt_value, median};
use crate::run::LinkResult;

/// Why a case has no result.
pub enum Failure {
    /// Killed at the time limit: a hang (a bug of the peer or of the bench, never retried).
    Hang(String),
    /// It failed (panicked, exited with an error, printed no result).
    Failed(String),
}

impl Failure {
    /// The first line of the reason.
    pub fn headline(&self) -> String {
        let (kind, why) = match self {
            Failure::Hang(why) => ("HANG", why),
            Failure::Failed(why) => ("FAILED", why),
        };
        format!("{kind}: {}", why.lines().next().unwrap_or(""))
    }

    /// The whole reason, with the end of the child's output.
    pub fn details(&self) -> &str {
        match self {
            Failure::Hang(why) | Failure::Failed(why) => why,
        }
    }
}

/// Everything a run of the bench measured.
#[derive(Default)]
pub struct Results {
    /// The runs of every case that ran.
    pub runs: BTreeMap<Case, Vec<LinkResult>>,
    /// The cases that failed or hung (their later runs are not attempted).
    pub failed: BTreeMap<Case, Failure>,
    /// The cases the filter selected.
    pub selected: Vec<Case>,
    /// Why the Go columns were skipped, if they were.
    pub go_skipped: Option<String>,
}

/// What the table shows of a case: medians over the runs, percentiles over all round trips.
#[derive(Clone, Copy, Debug)]
pub struct Summary {
    /// Bulk bytes per second / 10^6 (bulk: the transfer; interactive: the download during the
    /// measurement).
    pub mb_s: f64,
    /// The same as a percentage of the link's rate.
    pub share: f64,
    /// Interactive round trips: median, ms.
    pub p50_ms: f64,
    /// Interactive round trips: 99th percentile, ms.
    pub p99_ms: f64,
    /// Interactive round trips measured, all runs.
    pub samples: usize,
}

/// The `q`-th percentile (0 to 100) of sorted `v` by nearest rank.
fn percentile(sorted: &[u64], q: f64) -> f64 {
    let rank = ((q / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1] as f64
}

impl Results {
    /// The summary of `case`, if it has runs.
    pub fn summary(&self, case: Case) -> Option<Summary> {
        let runs = self.runs.get(&case).filter(|r| !r.is_empty())?;
        let mb_s = median(
            runs.iter()
                .map(|r| r.sample.units as f64 / r.sample.secs / 1e6)
                .collect(),
        );
        let mut lat: Vec<u64> = runs.iter().flat_map(|r| r.lat_us.iter().copied()).collect();
        lat.sort_unstable();
        let (p50_ms, p99_ms) = if lat.is_empty() {
            (f64::NAN, f64::NAN)
        } else {
            (percentile(&lat, 50.0) / 1e3, percentile(&lat, 99.0) / 1e3)
        };
        Some(Summary {
            mb_s,
            share: mb_s * 1e6 / case.path.rate() * 100.0,
            p50_ms,
            p99_ms,
            samples: lat.len(),
        })
    }

    /// A cell of `case`, `show` giving the text of a summary.
    fn cell(&self, case: Case, show: impl Fn(&Summary) -> String) -> String {
        if let Some(f) = self.failed.get(&case) {
            return match f {
                Failure::Hang(_) => "**HANG**".into(),
                Failure::Failed(_) => "**FAILED**".into(),
            };
        }
        match self.summary(case) {
            Some(s) => show(&s),
            None if self.go_skipped.is_some() && case.peer.imp.needs_go() => "skipped".into(),
            None if self.selected.contains(&case) => "no result".into(),
            None => "not run".into(),
        }
    }

    /// The columns of `sc`'s table: the peers with a selected case in it.
    fn columns(&self, sc: Scenario) -> Vec<Peer> {
        crate::cases::peers()
            .into_iter()
            .filter(|&p| {
                self.selected
                    .iter()
                    .any(|c| c.scenario == sc && c.peer == p)
            })
            .collect()
    }

    /// The rows of a bulk table: the paths with a selected case in it.
    fn paths(&self, sc: Scenario) -> Vec<LinkPath> {
        sc.paths()
            .iter()
            .copied()
            .filter(|&path| {
                self.selected
                    .iter()
                    .any(|c| c.scenario == sc && c.path == path)
            })
            .collect()
    }
}

/// Prints a table per scenario that ran, each headed by `command`, the command line.
pub fn print_tables(r: &Results, p: Params, reps: usize, smoke: bool, command: &str) {
    for sc in SCENARIOS {
        let columns = r.columns(sc);
        if columns.is_empty() {
            continue;
        }
        println!();
        println!("### {}", title(sc, p));
        println!();
        println!("`{command}`");
        println!(
            "({} run{} per case{}{})",
            reps,
            if reps == 1 { "" } else { "s" },
            if reps > 1 {
                ": medians; percentiles over all round trips"
            } else {
                ""
            },
            if smoke {
                "; SMOKE sizes: not for comparison"
            } else {
                ""
            }
        );
        println!();
        let mut header = String::from(if sc.is_bulk() {
            "| path: MB/s (% of link) |"
        } else {
            "| RTT 40 ms, 100 Mbit/s |"
        });
        let mut rule = String::from("|---|");
        for peer in &columns {
            header.push_str(&format!(" {} |", peer.header()));
            rule.push_str("---:|");
        }
        println!("{header}\n{rule}");
        if sc.is_bulk() {
            for path in r.paths(sc) {
                let mut line = format!("| {path} |");
                for &peer in &columns {
                    let case = Case {
                        scenario: sc,
                        peer,
                        path,
                    };
                    let cell = r.cell(case, |s| {
                        format!("{} ({:.0} %)", fmt_value(s.mb_s), s.share)
                    });
                    line.push_str(&format!(" {cell} |"));
                }
                println!("{line}");
            }
        } else {
            type Row = (&'static str, fn(&Summary) -> String);
            let rows: [Row; 5] = [
                ("interactive round trip p50, ms", |s| fmt_value(s.p50_ms)),
                ("interactive round trip p99, ms", |s| fmt_value(s.p99_ms)),
                ("round trips measured", |s| s.samples.to_string()),
                ("download during the measurement, MB/s", |s| {
                    fmt_value(s.mb_s)
                }),
                ("download, % of the link", |s| format!("{:.0} %", s.share)),
            ];
            for (name, show) in rows {
                let mut line = format!("| {name} |");
                for &peer in &columns {
                    for &path in sc.paths() {
                        let case = Case {
                            scenario: sc,
                            peer,
                            path,
                        };
                        line.push_str(&format!(" {} |", r.cell(case, show)));
                    }
                }
                println!("{line}");
            }
        }
    }
    if !r.failed.is_empty() {
        println!("\nFAILED or HUNG cases (a hang is a bug, never retried):");
        for (case, failure) in &r.failed {
            println!("- {}: {}", case.key(), failure.headline());
        }
    }
    if let Some(why) = &r.go_skipped {
        println!("\nGo columns skipped: {why}");
    }
}

/// The heading of `sc`'s table.
fn title(sc: Scenario, p: Params) -> String {
    let bytes = if p.bytes & ((1 << 20) - 1) == 0 {
        format!("{} MiB", p.bytes >> 20)
    } else {
        format!("{} bytes", p.bytes)
    };
    match sc {
        Scenario::Bulk1 => format!(
            "bulk1: one stream, client → server, {bytes} in 64 KiB writes, timed until the \
             server read the last byte"
        ),
        Scenario::Bulk8 => format!(
            "bulk8: {MANY} streams at once, client → server, {bytes} in all in 64 KiB writes, \
             timed until the server read the last byte"
        ),
        Scenario::Inter1 | Scenario::Inter8 => format!(
            "{}: 1-byte request/reply every {} ms beside {} download stream{} (server → \
             client), {:.1} s warm-up, {:.1} s measured",
            sc.key(),
            crate::cases::INTERVAL.as_millis(),
            sc.streams(),
            if sc.streams() == 1 { "" } else { "s" },
            p.warmup.as_secs_f64(),
            p.measure.as_secs_f64()
        ),
    }
}
