//! The cases of the link benchmark: scenario × emulated path × peer, their keys (what
//! `SMUX_LINK_FILTER` matches) and the sizes of a run.

use std::fmt;
use std::time::Duration;

use smux_test_support::netem::LinkSpec;

/// Streams of the 8-stream scenarios.
pub const MANY: usize = 8;
/// Time between two interactive requests.
pub const INTERVAL: Duration = Duration::from_millis(50);

/// What a case does.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum Scenario {
    /// One stream, client → server, 64 KiB writes.
    Bulk1,
    /// [`MANY`] streams at once, the same bytes in all.
    Bulk8,
    /// A 1-byte request/reply every [`INTERVAL`] beside one endless download.
    Inter1,
    /// The same beside [`MANY`] downloads.
    Inter8,
}

/// Every scenario, in table order.
pub const SCENARIOS: [Scenario; 4] = [
    Scenario::Bulk1,
    Scenario::Bulk8,
    Scenario::Inter1,
    Scenario::Inter8,
];

impl Scenario {
    /// Its name in case keys.
    pub fn key(self) -> &'static str {
        match self {
            Scenario::Bulk1 => "bulk1",
            Scenario::Bulk8 => "bulk8",
            Scenario::Inter1 => "inter1",
            Scenario::Inter8 => "inter8",
        }
    }

    /// The scenario named `s`.
    pub fn parse(s: &str) -> Option<Scenario> {
        SCENARIOS.into_iter().find(|sc| sc.key() == s)
    }

    /// Bulk streams: 1 or [`MANY`].
    pub fn streams(self) -> usize {
        match self {
            Scenario::Bulk1 | Scenario::Inter1 => 1,
            Scenario::Bulk8 | Scenario::Inter8 => MANY,
        }
    }

    /// Whether it is a timed transfer (bulk) rather than the latency beside a download.
    pub fn is_bulk(self) -> bool {
        matches!(self, Scenario::Bulk1 | Scenario::Bulk8)
    }

    /// The paths it runs on.
    pub fn paths(self) -> &'static [LinkPath] {
        if self.is_bulk() {
            &BULK_PATHS
        } else {
            &INTER_PATHS
        }
    }
}

/// An emulated path: round trip and bottleneck rate (queue and socket buffers as
/// [`LinkSpec::path`] sets them).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub struct LinkPath {
    /// Round-trip time, ms.
    pub rtt_ms: u64,
    /// Bottleneck rate, Mbit/s.
    pub mbit: u64,
}

/// The paths of the bulk scenarios.
pub const BULK_PATHS: [LinkPath; 4] = [
    LinkPath::new(10, 100),
    LinkPath::new(40, 100),
    LinkPath::new(200, 100),
    LinkPath::new(40, 1000),
];
/// The path of the interactive scenarios.
pub const INTER_PATHS: [LinkPath; 1] = [LinkPath::new(40, 100)];
/// The only path of the mixed cases (ours against Go), in every scenario.
pub const MIXED_PATH: LinkPath = LinkPath::new(40, 100);

impl LinkPath {
    const fn new(rtt_ms: u64, mbit: u64) -> LinkPath {
        LinkPath { rtt_ms, mbit }
    }

    /// Its name in case keys: `40ms-100mbit`.
    pub fn key(self) -> String {
        format!("{}ms-{}mbit", self.rtt_ms, self.mbit)
    }

    /// The path named `s`.
    pub fn parse(s: &str) -> Option<LinkPath> {
        let (rtt, rate) = s.split_once("ms-")?;
        Some(LinkPath::new(
            rtt.parse().ok()?,
            rate.strip_suffix("mbit")?.parse().ok()?,
        ))
    }

    /// The link emulator's settings.
    pub fn spec(self) -> LinkSpec {
        LinkSpec::path(Duration::from_millis(self.rtt_ms), self.mbit)
    }

    /// The bottleneck rate in bytes per second.
    pub fn rate(self) -> f64 {
        self.spec().rate as f64
    }
}

impl fmt::Display for LinkPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RTT {} ms, {} Mbit/s", self.rtt_ms, self.mbit)
    }
}

/// A multiplexer.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum Impl {
    /// smux-tokio, protocol version 1 or 2.
    Tokio(u8),
    /// smux-smol, protocol version 1 or 2.
    Smol(u8),
    /// Go's xtaci/smux, protocol version 1 or 2.
    Go(u8),
    /// async_smux 0.4.
    AsyncSmux,
    /// yamux 0.14.
    Yamux,
    /// Mixed: smux-tokio as the client (protocol version 1 or 2), the Go peer as the server.
    TokioToGo(u8),
    /// Mixed: the Go peer as the client, smux-tokio as the server (protocol version 1 or 2).
    GoToTokio(u8),
}

/// Every multiplexer, in column order.
pub const IMPLS: [Impl; 8] = [
    Impl::Tokio(1),
    Impl::Tokio(2),
    Impl::Smol(1),
    Impl::Smol(2),
    Impl::Go(1),
    Impl::Go(2),
    Impl::AsyncSmux,
    Impl::Yamux,
];

/// The mixed pairs, in column order (after every peer against itself); no `+lowat` variants.
pub const MIXED: [Impl; 4] = [
    Impl::TokioToGo(1),
    Impl::TokioToGo(2),
    Impl::GoToTokio(1),
    Impl::GoToTokio(2),
];

impl Impl {
    /// Its name in case keys.
    pub fn key(self) -> String {
        match self {
            Impl::Tokio(v) => format!("tokio-v{v}"),
            Impl::Smol(v) => format!("smol-v{v}"),
            Impl::Go(v) => format!("go-v{v}"),
            Impl::AsyncSmux => "async_smux".into(),
            Impl::Yamux => "yamux".into(),
            Impl::TokioToGo(v) => format!("tokio-v{v}>go"),
            Impl::GoToTokio(v) => format!("go>tokio-v{v}"),
        }
    }

    /// Its name in table headers.
    pub fn header(self) -> String {
        match self {
            Impl::Tokio(v) => format!("ours tokio v{v}"),
            Impl::Smol(v) => format!("ours smol v{v}"),
            Impl::Go(v) => format!("Go smux v{v}"),
            Impl::AsyncSmux => "async_smux 0.4".into(),
            Impl::Yamux => "yamux 0.14".into(),
            Impl::TokioToGo(v) => format!("ours tokio v{v} → Go"),
            Impl::GoToTokio(v) => format!("Go → ours tokio v{v}"),
        }
    }

    /// Whether it is a mixed pair: ours on one end, Go on the other.
    pub fn is_mixed(self) -> bool {
        matches!(self, Impl::TokioToGo(_) | Impl::GoToTokio(_))
    }

    /// Whether it runs the Go peer (alone or against ours).
    pub fn needs_go(self) -> bool {
        matches!(self, Impl::Go(_)) || self.is_mixed()
    }
}

/// A column: a multiplexer with its default socket options, or with `TCP_NOTSENT_LOWAT`
/// set on both of its TCP sockets.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub struct Peer {
    /// The multiplexer.
    pub imp: Impl,
    /// Whether both TCP sockets have `TCP_NOTSENT_LOWAT` = [`LOWAT`](crate::run::LOWAT).
    pub lowat: bool,
}

/// Every column, in order: each multiplexer against itself, the same with `+lowat`, then the
/// mixed pairs.
pub fn peers() -> Vec<Peer> {
    [false, true]
        .into_iter()
        .flat_map(|lowat| IMPLS.into_iter().map(move |imp| Peer { imp, lowat }))
        .chain(MIXED.into_iter().map(|imp| Peer { imp, lowat: false }))
        .collect()
}

impl Peer {
    /// Its name in case keys: `tokio-v2`, `go-v1+lowat`, `tokio-v2>go`, ...
    pub fn key(self) -> String {
        format!(
            "{}{}",
            self.imp.key(),
            if self.lowat { "+lowat" } else { "" }
        )
    }

    /// Its name in table headers.
    pub fn header(self) -> String {
        format!(
            "{}{}",
            self.imp.header(),
            if self.lowat { " +lowat" } else { "" }
        )
    }

    /// The peer named `s`.
    pub fn parse(s: &str) -> Option<Peer> {
        peers().into_iter().find(|p| p.key() == s)
    }
}

/// One case: a scenario of a peer on a path.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub struct Case {
    /// What it does.
    pub scenario: Scenario,
    /// Who does it.
    pub peer: Peer,
    /// Over which path.
    pub path: LinkPath,
}

impl Case {
    /// Its key, which filters match: `bulk1/tokio-v2/40ms-100mbit`.
    pub fn key(self) -> String {
        format!(
            "{}/{}/{}",
            self.scenario.key(),
            self.peer.key(),
            self.path.key()
        )
    }

    /// Every case, in table order (the mixed pairs on [`MIXED_PATH`] only).
    pub fn all() -> Vec<Case> {
        let peers = peers();
        SCENARIOS
            .into_iter()
            .flat_map(|scenario| {
                let peers = peers.clone();
                scenario.paths().iter().flat_map(move |&path| {
                    peers.clone().into_iter().map(move |peer| Case {
                        scenario,
                        peer,
                        path,
                    })
                })
            })
            .filter(|c| !c.peer.imp.is_mixed() || c.path == MIXED_PATH)
            .collect()
    }
}

/// Whether `key` matches the filter word `pattern`: it holds the pattern, where `*` in the
/// pattern stands for any text (`bulk1/*/40ms-100mbit`).
pub fn matches(key: &str, pattern: &str) -> bool {
    let mut rest = key;
    for part in pattern.split('*').filter(|p| !p.is_empty()) {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

/// The sizes of a run.
#[derive(Clone, Copy, Debug)]
pub struct Params {
    /// Bytes of a bulk case, over all its streams.
    pub bytes: u64,
    /// Download time before the interactive measurement.
    pub warmup: Duration,
    /// Length of the interactive measurement.
    pub measure: Duration,
}

impl Params {
    /// Interactive round trips per run.
    pub fn requests(&self) -> u32 {
        (self.measure.as_millis() / INTERVAL.as_millis()) as u32
    }
}
