//! The Go peer: `go-peer/main.go`, a program on Go's own `github.com/xtaci/smux` (Go 1.19 and
//! smux 1.5.16 from Debian: `golang-go`, `golang-github-xtaci-smux-dev`).
//!
//! [`peer_binary`] builds it once per test process in GOPATH mode, the only mode that works
//! offline with the Debian sources:
//!
//! ```text
//! GO111MODULE=off GOPATH=/usr/share/gocode:<tmp>/gopath GOPROXY=off GOCACHE=<tmp>/go-cache \
//!     go build -o <tmp>/go-peer-<pid> go-peer
//! ```
//!
//! where `<tmp>/gopath/src/go-peer/` holds a copy of `go-peer/*.go`. It panics when Go or Go
//! smux is missing or the build fails: a test that needs the Go peer fails, it never skips.
//!
//! [`GoPeer`] runs it: stdout lines are collected as they come (the peer prints
//! `listening ADDR` in server mode and a `summary ...` line at the end), stderr is kept for
//! failure messages, and the process is killed if the handle is dropped while it runs.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Where Debian installs the Go smux sources (`golang-github-xtaci-smux-dev`).
pub const DEBIAN_GOPATH: &str = "/usr/share/gocode";

/// The Go peer's sources in this crate.
pub const PEER_SOURCE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/go-peer");

static BINARY: OnceLock<PathBuf> = OnceLock::new();

/// The Go peer executable, built on first use in this process under `tmpdir` (pass
/// `env!("CARGO_TARGET_TMPDIR")` from an integration test).
///
/// # Panics
///
/// If `go` is not installed, Go smux is not in [`DEBIAN_GOPATH`], or the build fails: the
/// interop tests must fail, not skip, when they cannot run.
pub fn peer_binary(tmpdir: impl AsRef<Path>) -> &'static Path {
    BINARY.get_or_init(|| build(tmpdir.as_ref()))
}

fn build(tmpdir: &Path) -> PathBuf {
    let smux_src = Path::new(DEBIAN_GOPATH).join("src/github.com/xtaci/smux");
    assert!(
        smux_src.join("session.go").is_file(),
        "Go smux sources not found in {}: install the Debian packages golang-go and \
         golang-github-xtaci-smux-dev (scripts/test.sh does)",
        smux_src.display()
    );

    // A private GOPATH per process: src/go-peer holds a copy of the sources.
    let work = tmpdir.join(format!("go-peer-build-{}", std::process::id()));
    let pkg = work.join("gopath/src/go-peer");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&pkg)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", pkg.display()));
    let mut copied = 0;
    for entry in std::fs::read_dir(PEER_SOURCE_DIR)
        .unwrap_or_else(|e| panic!("cannot read {PEER_SOURCE_DIR}: {e}"))
    {
        let path = entry.expect("read_dir entry").path();
        if path.extension() == Some(OsStr::new("go")) {
            std::fs::copy(&path, pkg.join(path.file_name().unwrap()))
                .unwrap_or_else(|e| panic!("cannot copy {}: {e}", path.display()));
            copied += 1;
        }
    }
    assert!(copied > 0, "no Go sources in {PEER_SOURCE_DIR}");

    let out = tmpdir.join(format!("go-peer-{}", std::process::id()));
    let gopath = format!("{DEBIAN_GOPATH}:{}", work.join("gopath").display());
    let gocache = std::env::var_os("GOCACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| tmpdir.join("go-cache"));
    let go = std::env::var_os("GO").unwrap_or_else(|| "go".into());
    let started = Instant::now();
    let result = Command::new(&go)
        .arg("build")
        .arg("-o")
        .arg(&out)
        .arg("go-peer")
        .current_dir(&work)
        .env("GO111MODULE", "off")
        .env("GOPATH", &gopath)
        .env("GOPROXY", "off")
        .env("GOFLAGS", "")
        .env("GOCACHE", &gocache)
        .output();
    let output = match result {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "the Go toolchain (`{}`) is not installed: install the Debian packages golang-go \
             and golang-github-xtaci-smux-dev (scripts/test.sh does); the Go interop tests \
             cannot run without it",
            go.to_string_lossy()
        ),
        Err(e) => panic!("cannot run `{}`: {e}", go.to_string_lossy()),
    };
    assert!(
        output.status.success(),
        "building the Go peer failed ({}):\n  cd {} && GO111MODULE=off GOPATH={gopath} \
         GOPROXY=off go build -o {} go-peer\nstdout:\n{}\nstderr:\n{}",
        output.status,
        work.display(),
        out.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    eprintln!(
        "built the Go peer {} in {:.1?}",
        out.display(),
        started.elapsed()
    );
    out
}

/// A running Go peer.
#[derive(Debug)]
pub struct GoPeer {
    child: Child,
    description: String,
    lines: Receiver<String>,
    stdout: Vec<String>,
    stdout_thread: Option<JoinHandle<()>>,
    stderr: Arc<Mutex<String>>,
    stderr_thread: Option<JoinHandle<()>>,
}

/// What a Go peer printed, and how it ended.
#[derive(Debug, Clone)]
pub struct GoOutput {
    /// How the process ended.
    pub status: ExitStatus,
    /// Every stdout line.
    pub stdout: Vec<String>,
    /// All of stderr.
    pub stderr: String,
    /// The command line, for messages.
    pub description: String,
}

impl GoPeer {
    /// Starts `binary` with `args`.
    ///
    /// # Panics
    ///
    /// If the process cannot be started.
    pub fn spawn<I, S>(binary: &Path, args: I) -> GoPeer
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<_> = args
            .into_iter()
            .map(|a| a.as_ref().to_os_string())
            .collect();
        let description = std::iter::once(binary.as_os_str())
            .chain(args.iter().map(|a| a.as_os_str()))
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        let mut child = Command::new(binary)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the Go peer `{description}`: {e}"));

        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().expect("stdout is piped");
        let stdout_thread = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stderr.take().expect("stderr is piped");
        let sink = stderr.clone();
        let stderr_thread = std::thread::spawn(move || {
            let mut buf = [0; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        GoPeer {
            child,
            description,
            lines,
            stdout: Vec::new(),
            stdout_thread: Some(stdout_thread),
            stderr,
            stderr_thread: Some(stderr_thread),
        }
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Stdout lines received so far.
    pub fn stdout(&self) -> &[String] {
        &self.stdout
    }

    /// Stderr received so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// A function giving the stderr received so far, usable after the handle moved (for a
    /// stall report written while another task owns the peer).
    pub fn stderr_source(&self) -> impl Fn() -> String + Send + Sync + 'static {
        let stderr = self.stderr.clone();
        move || stderr.lock().unwrap().clone()
    }

    /// Waits for the next stdout line starting with `prefix` (the lines before it are kept
    /// in [`stdout`](Self::stdout)) and returns it.
    ///
    /// # Panics
    ///
    /// If no such line comes within `timeout` or the peer's stdout ends first.
    pub fn wait_line(&mut self, prefix: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.stdout.push(line.clone());
                    if line.starts_with(prefix) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!(
                    "the Go peer printed no `{prefix}` line within {timeout:?}\n{}",
                    self.context()
                ),
                Err(RecvTimeoutError::Disconnected) => {
                    // Give stderr a moment to arrive for the message.
                    std::thread::sleep(Duration::from_millis(50));
                    panic!(
                        "the Go peer ended without printing a `{prefix}` line (status {:?})\n{}",
                        self.child.try_wait().ok().flatten(),
                        self.context()
                    )
                }
            }
        }
    }

    /// Server mode: the address the peer listens on (its `listening ADDR` line).
    ///
    /// # Panics
    ///
    /// If the peer does not report one within 10 s.
    pub fn listen_addr(&mut self) -> SocketAddr {
        let line = self.wait_line("listening ", Duration::from_secs(10));
        let addr = line["listening ".len()..].trim();
        addr.parse()
            .unwrap_or_else(|e| panic!("bad address in `{line}`: {e}"))
    }

    /// Waits for the peer to exit and returns everything it printed. Does not check the exit
    /// status (see [`GoOutput::assert_success`]).
    ///
    /// # Panics
    ///
    /// If it is still running after `timeout` (it is killed then).
    pub fn finish(mut self, timeout: Duration) -> GoOutput {
        let deadline = Instant::now() + timeout;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Ok(None) => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    self.join_readers();
                    panic!(
                        "the Go peer did not exit within {timeout:?} (killed)\n{}",
                        self.context()
                    );
                }
                Err(e) => panic!("waiting for the Go peer: {e}"),
            }
        };
        self.join_readers();
        GoOutput {
            status,
            stdout: std::mem::take(&mut self.stdout),
            stderr: self.stderr(),
            description: self.description.clone(),
        }
    }

    fn join_readers(&mut self) {
        if let Some(t) = self.stdout_thread.take() {
            let _ = t.join();
        }
        while let Ok(line) = self.lines.try_recv() {
            self.stdout.push(line);
        }
        if let Some(t) = self.stderr_thread.take() {
            let _ = t.join();
        }
    }

    fn context(&self) -> String {
        format!(
            "command: {}\nstdout so far:\n{}\nstderr so far:\n{}",
            self.description,
            self.stdout.join("\n"),
            self.stderr()
        )
    }
}

impl Drop for GoPeer {
    fn drop(&mut self) {
        // Never leave a peer running after a failed test.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl GoOutput {
    /// Whether the peer exited with status 0.
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// Panics, with everything the peer printed, unless it exited with status 0.
    pub fn assert_success(&self) -> &Self {
        assert!(
            self.success(),
            "the Go peer failed ({})\n{self}",
            self.status
        );
        self
    }

    /// The `key=value` fields of the last `summary` line.
    ///
    /// # Panics
    ///
    /// If there is no summary line.
    pub fn summary(&self) -> BTreeMap<String, String> {
        let line = self
            .stdout
            .iter()
            .rev()
            .find(|l| l.starts_with("summary "))
            .unwrap_or_else(|| panic!("the Go peer printed no summary\n{self}"));
        line.split_whitespace()
            .skip(1)
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    /// A numeric field of the summary.
    ///
    /// # Panics
    ///
    /// If the field is missing or not a number.
    pub fn summary_u64(&self, key: &str) -> u64 {
        let summary = self.summary();
        let value = summary
            .get(key)
            .unwrap_or_else(|| panic!("no `{key}` in the Go peer's summary\n{self}"));
        value
            .parse()
            .unwrap_or_else(|e| panic!("`{key}={value}` in the Go peer's summary: {e}"))
    }

    /// The whitespace-separated fields (after the first word) of every stdout line whose
    /// first word is `word`.
    pub fn records(&self, word: &str) -> Vec<Vec<String>> {
        self.stdout
            .iter()
            .filter_map(|line| {
                let mut fields = line.split_whitespace();
                (fields.next() == Some(word)).then(|| fields.map(str::to_owned).collect())
            })
            .collect()
    }
}

impl std::fmt::Display for GoOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "command: {}\nstatus: {}\nstdout:\n{}\nstderr:\n{}",
            self.description,
            self.status,
            self.stdout.join("\n"),
            self.stderr
        )
    }
}
