//! A session fed arbitrary peer bytes, driven like an application would drive it.
//!
//! Input: a config byte (bit 0: server, bit 1: version 2, bits 2-3: buffer sizes, bit 4:
//! keepalive off), a byte seeding the schedule (chunk sizes, reads, writes, time), then the
//! bytes the peer sends. Checks that nothing panics and that buffered input stays bounded (the
//! receive budget plus one frame in version 1, the windows granted in version 2).

use std::io::IoSlice;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use smux_proto::{Config, Event, Frame, FrameDecoder, Session, Side, StreamId, Version};

use crate::shared::{reply_cap, set_limits, window_bounds, Rng};

fn config(byte: u8) -> Config {
    let mut c = Config::default()
        .with_version(if byte & 2 == 0 {
            Version::V1
        } else {
            Version::V2
        })
        .with_keep_alive_disabled(byte & 16 != 0);
    let limits = match (byte >> 2) & 3 {
        0 => return c,
        1 => [512, 256, 512, 2048, 1024, 2, 4],
        2 => [65_536, 16_384, 4096, 16_384, 4096, 16, 32],
        _ => [1, 1, 1, 1, 1, 1, 2],
    };
    set_limits(&mut c, limits);
    c
}

/// The largest PSH payload among the frames `wire` starts with.
fn max_payload(version: Version, wire: &[u8]) -> usize {
    let (decoder, mut buf, mut max) = (FrameDecoder::new(version), BytesMut::from(wire), 0);
    while let Ok(Some(frame)) = decoder.decode(&mut buf) {
        if let Frame::Psh { data, .. } = frame {
            max = max.max(data.len());
        }
    }
    max
}

/// Version 1: unread input exceeds the budget by less than one frame: input is only taken
/// while under the budget, and a frame adds one payload (at most `max_payload`, and at most
/// 65535). Version 2: each stream holds at most the widest window it ever granted (the
/// initial window, or at most the cap), whatever the peer sends. The session took exactly
/// the `taken` bytes the harness fed and it did not leave.
fn check(s: &Session, max_payload: usize, taken: usize) {
    let c = s.config();
    let recv = s.buffered_input();
    if c.version == Version::V1 {
        assert!(recv < c.max_receive_buffer + 65_535, "{recv}");
        assert!(recv < c.max_receive_buffer + max_payload, "{recv}");
    } else {
        let (_, cap) = window_bounds(c);
        let widest = cap.max(reply_cap(c)) as usize;
        assert!(recv <= s.stream_count() * widest, "{recv}");
    }
    assert!(
        s.buffered_output() <= c.max_send_buffer,
        "{}",
        s.buffered_output()
    );
    assert!(s.stream_count() <= c.max_streams, "{}", s.stream_count());
    assert_eq!(s.stats().bytes_in, taken as u64, "stats().bytes_in");
    assert_eq!(s.is_closed(), s.error().is_some());
}

/// Hands (part of) the pending output to a pretend transport.
fn drain_output(s: &mut Session, rng: &mut Rng) {
    loop {
        let total: usize = {
            let mut slices = [IoSlice::new(&[]); 8];
            let n = s.poll_transmit(&mut slices);
            slices[..n].iter().map(|sl| sl.len()).sum()
        };
        if total == 0 {
            return;
        }
        let n = if rng.below(4) == 0 {
            total.div_ceil(2)
        } else {
            total
        };
        s.transmitted(n);
    }
}

/// One turn of the application: events, accepts, reads, a few writes, time.
fn app_turn(s: &mut Session, rng: &mut Rng, streams: &mut Vec<StreamId>, now: &mut Instant) {
    drain_output(s, rng);
    while let Some(event) = s.poll_event() {
        if let Event::Closed(_) = event {
            assert!(s.is_closed());
        }
    }
    if rng.below(4) != 0 {
        while let Some(id) = s.accept_stream() {
            streams.push(id);
        }
    }
    if rng.below(16) == 0 {
        if let Ok(id) = s.open_stream() {
            streams.push(id);
        }
    }
    let mut buf = [0u8; 2048];
    streams.retain(|&id| {
        let keep = match rng.below(8) {
            0 => false,
            1 => s.write(id, &buf[..rng.below(1500) as usize]).is_ok(),
            2 => {
                let _ = s.finish(id);
                true
            }
            3 => true, // Not read this turn: backpressure.
            4 | 5 => loop {
                match s.read_chunk(id, 1 + rng.below(70_000) as usize) {
                    Ok(Some(chunk)) => assert!(!chunk.is_empty()),
                    Ok(None) => break false,
                    Err(_) => break true,
                }
            },
            _ => {
                let len = 1 + rng.below(buf.len() as u32) as usize;
                match s.read(id, &mut buf[..len]) {
                    Ok(0) => false,
                    Ok(n) => n <= len,
                    Err(_) => true,
                }
            }
        };
        if !keep {
            s.release_stream(id);
        }
        keep
    });
    match rng.below(8) {
        0 => *now += Duration::from_millis(u64::from(rng.below(45_000))),
        1 => *now = s.poll_timeout().map_or(*now, |t| t.max(*now)),
        _ => {}
    }
    s.handle_timeout(*now);
    if rng.below(64) == 0 {
        s.close();
    }
    drain_output(s, rng);
}

/// Runs one input; panics if an invariant is broken.
pub fn session_input(data: &[u8]) {
    static BASE: OnceLock<Instant> = OnceLock::new();
    let base = *BASE.get_or_init(Instant::now);
    let Some((&[cfg, seed], wire)) = data.split_first_chunk::<2>() else {
        return;
    };
    let side = if cfg & 1 == 0 {
        Side::Client
    } else {
        Side::Server
    };
    let mut s = Session::new(side, config(cfg), base).expect("valid config");
    let max_payload = max_payload(s.config().version, wire);
    let mut rng = Rng(u32::from(seed).wrapping_mul(0x9E37_79B9) | 1);
    let mut now = base;
    let mut streams = Vec::new();
    let mut input = BytesMut::new();
    let mut fed = 0;
    while fed < wire.len() && !s.is_closed() {
        let n = match rng.below(4) {
            0 => 1 + rng.below(8) as usize,
            1 => 1 + rng.below(64) as usize,
            2 => 1 + rng.below(70_000) as usize,
            _ => wire.len(),
        };
        let n = n.min(wire.len() - fed);
        input.extend_from_slice(&wire[fed..fed + n]);
        fed += n;
        let _ = s.handle_input(now, &mut input);
        check(&s, max_payload, fed - input.len());
        app_turn(&mut s, &mut rng, &mut streams, &mut now);
        check(&s, max_payload, fed - input.len());
    }
    // End of input: keep reading so paused input is used up, then expect the session to end.
    let _ = s.handle_eof(now, &mut input);
    for _ in 0..=wire.len() {
        if s.is_closed() {
            break;
        }
        app_turn(&mut s, &mut rng, &mut streams, &mut now);
        let _ = s.handle_input(now, &mut input);
        check(&s, max_payload, fed - input.len());
    }
    drain_output(&mut s, &mut rng);
    while s.poll_event().is_some() {}
    check(&s, max_payload, fed - input.len());
}
