//! The plan of the loss-free soak tests (`smux-tokio/tests/soak.rs`, `smux-smol/tests/soak.rs`):
//! what each stream of a round does, its data and their checksums, and how long to run.
//!
//! A round opens [`STREAMS_PER_ROUND`] streams at once over one mux pair. Each stream starts
//! with a [`HEADER_LEN`]-byte header (its [`StreamPlan`]) so the server knows what to do, then
//! the client's request bytes. Sizes are mostly small with a tail up to about 256 KiB
//! ([`MAX_LEN`]).

use std::time::Duration;

use crate::{payload, XorShift};

/// Streams opened concurrently in each round (below the default `max_streams`, so none is
/// refused, and below the default accept backlog, so input never pauses for it).
pub const STREAMS_PER_ROUND: usize = 1000;

/// The largest request or reply: 256 KiB less the header, so that a whole request fits in the
/// window a version 2 writer assumes before the reader's first update.
pub const MAX_LEN: usize = 256 * 1024 - HEADER_LEN;

/// Largest reply the server writes to a stream the client dropped: unread, never acknowledged,
/// so it must fit in the initial window.
pub const MAX_LEN_TO_DROPPED: usize = 16 * 1024;

/// Bytes of the header that starts every stream.
pub const HEADER_LEN: usize = 24;

/// The environment variable holding the soak duration in seconds.
pub const DURATION_VAR: &str = "SMUX_SOAK_SECS";

/// What a stream does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// The client writes its request while reading the echo; the server echoes as it reads,
    /// then finishes after the client's FIN.
    Echo,
    /// The client writes its request and half-closes, then reads the reply to its end; the
    /// server reads the request to its end, then writes a different reply and finishes.
    HalfClose,
    /// The server reads `cut` bytes of the request and drops the stream. The client writes
    /// its request (or gives up once it sees the stream end) and must read nothing: EOF or an
    /// error.
    ServerDrops,
    /// The client writes `cut` bytes of its request and drops the stream without reading. The
    /// server must read exactly those bytes and EOF; it then writes a small reply and finishes.
    ClientDrops,
}

impl Behaviour {
    const ALL: [Behaviour; 4] = [
        Behaviour::Echo,
        Behaviour::HalfClose,
        Behaviour::ServerDrops,
        Behaviour::ClientDrops,
    ];
}

/// Everything about one stream, sent as its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamPlan {
    /// Seeds the request and the reply.
    pub seed: u64,
    /// What the stream does.
    pub behaviour: Behaviour,
    /// Request length (what the client would write in full).
    pub len: usize,
    /// [`Behaviour::ServerDrops`]: bytes the server reads before dropping;
    /// [`Behaviour::ClientDrops`]: bytes the client writes before dropping. Below `len`.
    pub cut: usize,
    /// [`Behaviour::HalfClose`], [`Behaviour::ClientDrops`]: length of the server's reply.
    pub reply_len: usize,
}

impl StreamPlan {
    /// The header announcing this plan.
    pub fn header(&self) -> [u8; HEADER_LEN] {
        let mut h = [0; HEADER_LEN];
        h[..8].copy_from_slice(&self.seed.to_le_bytes());
        h[8] = Behaviour::ALL
            .iter()
            .position(|&b| b == self.behaviour)
            .expect("listed") as u8;
        for (i, v) in [self.len, self.cut, self.reply_len].into_iter().enumerate() {
            let v = u32::try_from(v).expect("lengths fit in u32");
            h[12 + 4 * i..16 + 4 * i].copy_from_slice(&v.to_le_bytes());
        }
        h
    }

    /// Decodes a header; `None` if it is not one.
    pub fn from_header(h: &[u8; HEADER_LEN]) -> Option<StreamPlan> {
        let word = |i: usize| {
            let v = u32::from_le_bytes(h[12 + 4 * i..16 + 4 * i].try_into().expect("4 bytes"));
            v as usize
        };
        let plan = StreamPlan {
            seed: u64::from_le_bytes(h[..8].try_into().expect("8 bytes")),
            behaviour: *Behaviour::ALL.get(usize::from(h[8]))?,
            len: word(0),
            cut: word(1),
            reply_len: word(2),
        };
        (plan.header() == *h).then_some(plan)
    }

    /// The full request.
    pub fn request(&self) -> Vec<u8> {
        payload(self.seed, self.len)
    }

    /// The server's reply ([`Behaviour::HalfClose`], [`Behaviour::ClientDrops`]).
    pub fn reply(&self) -> Vec<u8> {
        payload(!self.seed, self.reply_len)
    }

    /// How many request bytes the server reads: all, or `cut` for the dropping behaviours.
    pub fn server_reads(&self) -> usize {
        match self.behaviour {
            Behaviour::Echo | Behaviour::HalfClose => self.len,
            Behaviour::ServerDrops | Behaviour::ClientDrops => self.cut,
        }
    }
}

/// A request or reply length: 80% up to 4 KiB, 15% up to 64 KiB, 5% up to [`MAX_LEN`] (about
/// 13 KiB on average), empty now and then.
fn size(rng: &mut XorShift) -> usize {
    match rng.range(0, 99) {
        0..=79 => rng.range(0, 4096),
        80..=94 => rng.range(0, 64 * 1024),
        _ => rng.range(0, MAX_LEN),
    }
}

/// The plans of round `round` (deterministic): a quarter of the streams of each behaviour,
/// shuffled.
pub fn round_plans(round: u64) -> Vec<StreamPlan> {
    let mut rng = XorShift::new(0x50a4 ^ round);
    (0..STREAMS_PER_ROUND)
        .map(|i| {
            let behaviour = Behaviour::ALL[rng.range(0, 3)];
            let seed = (round << 32) | i as u64;
            let mut len = size(&mut rng);
            let (mut cut, mut reply_len) = (0, 0);
            match behaviour {
                Behaviour::Echo => {}
                Behaviour::HalfClose => reply_len = size(&mut rng),
                Behaviour::ServerDrops | Behaviour::ClientDrops => {
                    len = len.max(1);
                    cut = rng.range(0, len - 1);
                    if behaviour == Behaviour::ClientDrops {
                        reply_len = size(&mut rng).min(MAX_LEN_TO_DROPPED);
                    }
                }
            }
            StreamPlan {
                seed,
                behaviour,
                len,
                cut,
                reply_len,
            }
        })
        .collect()
}

/// How long to keep running rounds, from [`DURATION_VAR`] (seconds); zero (one round) when it
/// is unset. Panics on a value that is not a number, rather than silently running one round.
pub fn duration() -> Duration {
    match std::env::var(DURATION_VAR) {
        Ok(v) => Duration::from_secs(
            v.trim()
                .parse()
                .unwrap_or_else(|_| panic!("{DURATION_VAR}={v:?} is not a number of seconds")),
        ),
        Err(_) => Duration::ZERO,
    }
}

/// What one side saw of the streams of a soak, to compare at the end.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Streams handled, per behaviour (in [`Behaviour`] order).
    pub streams: [u64; 4],
    /// Payload bytes read and checked.
    pub bytes_read: u64,
}

impl Tally {
    /// Counts one stream of `behaviour` that read and checked `bytes` payload bytes.
    pub fn add(&mut self, behaviour: Behaviour, bytes: usize) {
        let i = Behaviour::ALL
            .iter()
            .position(|&b| b == behaviour)
            .expect("listed");
        self.streams[i] += 1;
        self.bytes_read += bytes as u64;
    }

    /// Adds another tally.
    pub fn merge(&mut self, other: &Tally) {
        for (a, b) in self.streams.iter_mut().zip(other.streams) {
            *a += b;
        }
        self.bytes_read += other.bytes_read;
    }

    /// Streams counted.
    pub fn total(&self) -> u64 {
        self.streams.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_and_plans_are_deterministic() {
        let plans = round_plans(7);
        assert_eq!(plans, round_plans(7));
        assert_ne!(plans, round_plans(8));
        assert_eq!(plans.len(), STREAMS_PER_ROUND);
        for p in &plans {
            assert_eq!(StreamPlan::from_header(&p.header()), Some(*p));
            assert!(p.len <= MAX_LEN && p.reply_len <= MAX_LEN);
            if matches!(p.behaviour, Behaviour::ServerDrops | Behaviour::ClientDrops) {
                assert!(p.cut < p.len);
            }
        }
        for b in Behaviour::ALL {
            let n = plans.iter().filter(|p| p.behaviour == b).count();
            assert!((150..350).contains(&n), "{b:?}: {n}");
        }
        let mut bad = plans[0].header();
        bad[8] = 9;
        assert_eq!(StreamPlan::from_header(&bad), None);
    }
}
