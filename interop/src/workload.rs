//! Helpers of the workload matrix (`tests/workloads.rs`) and of the Go interop tests: the two
//! buffer configurations, the progress counter the stall detector watches (with its lanes),
//! and the stall report ([`Diagnostics`]: a compact rendering of each [`SessionSnapshot`], the
//! Go peer's stderr and a summary of its goroutine dump).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use smux_proto::{Config, SessionSnapshot, StreamSnapshot, Version};

use crate::go::GoPeer;
use crate::runtime::Runtime;

/// How long a case may go without moving a byte before it counts as stalled.
pub const STALL: Duration = Duration::from_secs(10);

/// The buffer sizes of both ends of a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Buffers {
    /// Everything at its default (ours: [`Config::default`]; Go: `DefaultConfig()`).
    Default,
    /// Small buffers everywhere: receive budget 256 KiB, stream window 64 KiB, frames of
    /// 4 KiB, send buffers of 128 KiB (16 KiB per stream), and (ours only; Go's is fixed at
    /// 1024) an accept backlog of 128, so that bursts of opens fill it.
    Small,
}

impl Buffers {
    /// For case names.
    pub fn name(self) -> &'static str {
        match self {
            Buffers::Default => "default",
            Buffers::Small => "small",
        }
    }

    /// Our configuration.
    pub fn config(self, version: Version) -> Config {
        let config = Config::default().with_version(version);
        match self {
            Buffers::Default => config,
            Buffers::Small => config
                .with_max_receive_buffer(256 * 1024)
                .with_max_stream_buffer(64 * 1024)
                .with_max_frame_size(4 * 1024)
                .with_max_send_buffer(128 * 1024)
                .with_max_stream_send_buffer(16 * 1024)
                .with_accept_backlog(128),
        }
    }

    /// The Go peer's flags for the same sizes.
    pub fn go_args(self) -> Vec<String> {
        let list: &[&str] = match self {
            Buffers::Default => &[],
            Buffers::Small => &[
                "-max-receive-buffer",
                "262144",
                "-max-stream-buffer",
                "65536",
                "-max-frame",
                "4096",
            ],
        };
        list.iter().map(|s| s.to_string()).collect()
    }
}

/// Bytes moved by a case, as its own code counts them (every read and write of the test's
/// endpoints adds to it), and its [`Lane`]s. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    total: Arc<AtomicU64>,
    lanes: Arc<Mutex<Vec<Arc<LaneState>>>>,
}

impl Progress {
    /// A counter at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts `n` bytes moved.
    pub fn add(&self, n: usize) {
        self.total.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Bytes moved so far.
    pub fn get(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// A lane named `name` (for the stall report), busy until the [`Lane`] is dropped.
    pub fn lane(&self, name: impl Into<String>) -> Lane {
        let state = Arc::new(LaneState {
            name: name.into(),
            bytes: AtomicU64::new(0),
            busy: AtomicBool::new(true),
        });
        let mut lanes = self.lanes.lock().unwrap();
        let id = lanes.len();
        lanes.push(state.clone());
        Lane {
            id,
            state,
            total: self.total.clone(),
        }
    }

    /// The busy lanes: (id, name, bytes moved so far).
    pub fn busy_lanes(&self) -> Vec<(usize, String, u64)> {
        let lanes = self.lanes.lock().unwrap();
        lanes
            .iter()
            .enumerate()
            .filter(|(_, l)| l.busy.load(Ordering::Relaxed))
            .map(|(id, l)| (id, l.name.clone(), l.bytes.load(Ordering::Relaxed)))
            .collect()
    }
}

/// A stream that must keep moving on its own while it is busy: an interactive stream beside
/// bulk ones, whose stall the bulk traffic would hide from the case's total. The stall
/// detector watches every busy lane as it watches the total. What a lane counts counts in the
/// total too; the lane is busy until dropped.
#[derive(Debug)]
pub struct Lane {
    id: usize,
    state: Arc<LaneState>,
    total: Arc<AtomicU64>,
}

#[derive(Debug)]
struct LaneState {
    name: String,
    bytes: AtomicU64,
    busy: AtomicBool,
}

impl Lane {
    /// Counts `n` bytes moved by this lane (and by the case).
    pub fn add(&self, n: usize) {
        self.state.bytes.fetch_add(n as u64, Ordering::Relaxed);
        self.total.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// The lane's id in [`Progress::busy_lanes`].
    pub fn id(&self) -> usize {
        self.id
    }
}

impl Drop for Lane {
    fn drop(&mut self) {
        self.state.busy.store(false, Ordering::Relaxed);
    }
}

/// Most streams listed one by one in [`describe_snapshot`].
const LISTED_STREAMS: usize = 24;

/// A compact, readable rendering of a snapshot: the session's state, counts of streams by
/// flag, and the first few streams that hold data or wait for something.
pub fn describe_snapshot(s: &SessionSnapshot) -> String {
    let mut out = String::new();
    let pause = match s.input_pause {
        Some(p) => format!("PAUSED: {p}"),
        None => "reading".to_owned(),
    };
    let _ = writeln!(
        out,
        "  {:?} v{}: input {pause}; closing={} error={:?}",
        s.side,
        s.version.as_u8(),
        s.closing,
        s.error.as_ref().map(ToString::to_string),
    );
    let _ = writeln!(
        out,
        "  buffered in={} out={} receive_credit={} accept_backlog={} queued_control={} \
         queued_transmit={}",
        s.buffered_input,
        s.buffered_output,
        s.receive_credit,
        s.accept_backlog,
        s.queued_control,
        s.queued_transmit
    );
    let _ = writeln!(out, "  stats {:?}", s.stats);
    let count = |f: fn(&StreamSnapshot) -> bool| s.streams.iter().filter(|t| f(t)).count();
    let _ = writeln!(
        out,
        "  {} streams: read_blocked={} write_blocked={} send_window_0={} unaccepted={} \
         fin_received={} finished={} fin_transmitted={} released={} send_stalled={} \
         with_input={} with_output={}",
        s.streams.len(),
        count(|t| t.read_blocked),
        count(|t| t.write_blocked),
        count(|t| t.send_window_available == Some(0)),
        count(|t| t.unaccepted),
        count(|t| t.fin_received),
        count(|t| t.finished),
        count(|t| t.fin_transmitted),
        count(|t| t.released),
        count(|t| t.send_stalled),
        count(|t| t.buffered_input > 0),
        count(|t| t.buffered_output > 0),
    );
    let interesting = s.streams.iter().filter(|t| {
        t.buffered_input > 0
            || t.buffered_output > 0
            || t.write_blocked
            || t.send_window_available == Some(0)
            || t.unaccepted
    });
    for (i, t) in interesting.enumerate() {
        if i == LISTED_STREAMS {
            let _ = writeln!(out, "  ... (first {LISTED_STREAMS} streams shown)");
            break;
        }
        let _ = writeln!(out, "    {}", describe_stream(t));
    }
    out
}

fn describe_stream(t: &StreamSnapshot) -> String {
    let mut line = format!(
        "stream {}: in={} out={}",
        t.id, t.buffered_input, t.buffered_output
    );
    if let Some(w) = t.receive_window {
        let _ = write!(
            line,
            " recv(received={} consumed={} granted={} window={})",
            w.received, w.consumed, w.granted, w.window
        );
    }
    if let Some(a) = t.send_window_available {
        let _ = write!(line, " send_window={a}");
    }
    for (flag, name) in [
        (t.unaccepted, "unaccepted"),
        (t.fin_received, "fin_received"),
        (t.finished, "finished"),
        (t.fin_transmitted, "fin_transmitted"),
        (t.released, "released"),
        (t.read_blocked, "read_blocked"),
        (t.write_blocked, "write_blocked"),
        (t.send_stalled, "send_stalled"),
    ] {
        if flag {
            line.push(' ');
            line.push_str(name);
        }
    }
    line
}

/// Summarises a Go goroutine dump (what Go prints on SIGQUIT): goroutines counted by state and
/// by their innermost frames in smux or in the peer program, most frequent first.
pub fn summarize_goroutines(dump: &str) -> String {
    let mut groups: BTreeMap<String, usize> = BTreeMap::new();
    let mut total = 0;
    for block in dump.split("\n\n") {
        let mut lines = block.lines().skip_while(|l| !l.starts_with("goroutine "));
        let Some(header) = lines.next() else { continue };
        total += 1;
        let state = header
            .split_once('[')
            .and_then(|(_, rest)| rest.split(']').next())
            .unwrap_or("?");
        let frames: Vec<&str> = lines
            .filter(|l| !l.starts_with('\t') && !l.starts_with("created by "))
            .map(|l| l.rfind('(').map_or(l, |i| &l[..i]))
            .filter(|f| f.contains("xtaci/smux") || f.starts_with("main."))
            .take(2)
            .collect();
        *groups
            .entry(format!("[{state}] {}", frames.join(" <- ")))
            .or_default() += 1;
    }
    let mut sorted: Vec<_> = groups.into_iter().collect();
    sorted.sort_by_key(|g| std::cmp::Reverse(g.1));
    let mut out = format!("{total} goroutines:\n");
    for (what, n) in sorted {
        let _ = writeln!(out, "  {n:5} {what}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goroutines_are_grouped_by_state_and_smux_frames() {
        let dump = "SIGQUIT: quit\nPC=0x0\n\n\
            goroutine 1 [chan receive]:\nmain.run(0x1)\n\t/x/main.go:10 +0x1\n\n\
            goroutine 7 [select]:\ngithub.com/xtaci/smux.(*Session).recvLoop(0x2)\n\t/s.go:1\n\n\
            goroutine 8 [select]:\nruntime.gopark()\n\t/r.go:1\n\
            github.com/xtaci/smux.(*Session).recvLoop(0x2)\n\t/s.go:1\n";
        let summary = summarize_goroutines(dump);
        assert!(summary.starts_with("3 goroutines:"), "{summary}");
        assert!(
            summary.contains("    2 [select] github.com/xtaci/smux.(*Session).recvLoop"),
            "{summary}"
        );
        assert!(
            summary.contains("    1 [chan receive] main.run"),
            "{summary}"
        );
    }

    #[test]
    fn lanes_count_in_the_total_and_are_busy_until_dropped() {
        let progress = Progress::new();
        progress.add(5);
        let first = progress.lane("first");
        let second = progress.lane("second");
        first.add(3);
        assert_eq!(progress.get(), 8);
        assert_eq!(
            progress.busy_lanes(),
            vec![
                (first.id(), "first".into(), 3),
                (second.id(), "second".into(), 0)
            ]
        );
        drop(first);
        assert_eq!(
            progress.busy_lanes(),
            vec![(second.id(), "second".into(), 0)]
        );
    }

    #[test]
    fn small_buffers_are_valid_and_smaller() {
        for version in [Version::V1, Version::V2] {
            let small = Buffers::Small.config(version);
            small.validate().unwrap();
            assert!(small.max_receive_buffer < Buffers::Default.config(version).max_receive_buffer);
            assert_eq!(small.version, version);
        }
        assert_eq!(Buffers::Small.go_args().len(), 6);
    }
}

// ------------------------------------------------------------------------------------------------
// Stall reports

/// What a stall report shows: our sessions' snapshots and the Go peer's side.
#[derive(Default)]
pub struct Diagnostics {
    sessions: Vec<(&'static str, SnapshotSource)>,
    /// The Go peer's process id and its stderr.
    go: Option<(u32, Box<dyn Fn() -> String + Send + Sync>)>,
}

type SnapshotSource = Box<dyn Fn() -> SessionSnapshot + Send + Sync>;

impl Diagnostics {
    /// Adds our session `mux` (on runtime `R`), shown as `label`.
    pub fn session<R: Runtime>(&mut self, label: &'static str, mux: &R::Mux) {
        let mux = mux.clone();
        self.sessions
            .push((label, Box::new(move || R::snapshot(&mux))));
    }

    /// Adds the Go peer.
    pub fn go(&mut self, peer: &GoPeer) {
        self.go = Some((peer.id(), Box::new(peer.stderr_source())));
    }

    /// Our snapshots first (before Go goes away), then Go's stderr and goroutines: Go dumps
    /// them on SIGQUIT (and exits). Blocks the thread while Go writes its dump: the case's
    /// future, polled by the same task, must not see the streams fail meanwhile and report
    /// that instead of the stall.
    pub fn report(&self) -> String {
        let mut out = String::new();
        for (label, snapshot) in &self.sessions {
            out += &format!(
                "snapshot of our {label}:\n{}",
                describe_snapshot(&snapshot())
            );
        }
        if let Some((pid, stderr)) = &self.go {
            let before = stderr();
            let quit = std::process::Command::new("kill")
                .args(["-QUIT", &pid.to_string()])
                .status();
            let mut dump = String::new();
            if matches!(quit, Ok(s) if s.success()) {
                for _ in 0..40 {
                    std::thread::sleep(Duration::from_millis(50));
                    dump = stderr();
                    if dump.len() > before.len() {
                        std::thread::sleep(Duration::from_millis(300));
                        dump = stderr();
                        break;
                    }
                }
            }
            let dump = dump.get(before.len()..).unwrap_or("");
            out += &format!(
                "Go peer stderr before the stall report:\n{}\nGo goroutines (SIGQUIT dump):\n{}",
                tail(&before, 4000),
                summarize_goroutines(dump)
            );
        }
        out
    }
}

/// The last `max` bytes of `text` (about: cut at a character boundary).
pub fn tail(text: &str, max: usize) -> &str {
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}
