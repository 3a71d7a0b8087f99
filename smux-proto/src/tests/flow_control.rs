//! Receive budget (v1), per-stream windows (v2), and the order of outgoing frames.

use super::*;
use crate::window::INITIAL_PEER_WINDOW;
use crate::WriteError;

#[test]
fn v1_budget_pauses_input_and_reading_resumes_it() {
    let config = Config {
        max_receive_buffer: 100_000,
        max_stream_buffer: 50_000,
        ..Config::default()
    };
    let mut pair = Pair::new(config);
    let (id, _) = pair.open_client_stream();
    let data = pattern(10, 400_000);
    let mut left = &data[..];
    while let Ok(n) = pair.client.write(id, left) {
        left = &left[n..];
        if left.is_empty() {
            break;
        }
    }
    pair.drive();
    assert!(!pair.server.wants_read(), "budget used up");
    let buffered = pair.server.buffered_input();
    assert!(
        (100_000..=100_000 + 65_535).contains(&buffered),
        "buffered {buffered} outside budget + one frame"
    );
    assert!(
        !pair.to_server.is_empty(),
        "the rest waits in the transport"
    );
    // Reading gives the budget back; everything arrives.
    let mut got = Vec::new();
    while got.len() < data.len() {
        read_available(&mut pair.server, id, &mut got).unwrap();
        if !left.is_empty() {
            if let Ok(n) = pair.client.write(id, left) {
                left = &left[n..];
            }
        }
        pair.drive();
        assert!(pair.server.buffered_input() <= 100_000 + 65_535);
    }
    assert_eq!(got, data);
}

#[test]
fn v2_sender_never_exceeds_the_initial_window() {
    let mut pair = Pair::v(Version::V2);
    let (id, _) = pair.open_client_stream();
    write_all_until_blocked(&mut pair, id, 1_000_000);
    pair.drive();
    assert_eq!(pair.server.buffered_input(), INITIAL_PEER_WINDOW as usize);
    assert!(pair.server.wants_read(), "the session keeps reading");
}

/// Writes up to `total` bytes until the client's buffers are full.
fn write_all_until_blocked(pair: &mut Pair, id: StreamId, total: usize) -> usize {
    let data = pattern(11, total);
    let mut sent = 0;
    loop {
        match pair.client.write(id, &data[sent..]) {
            Ok(n) => sent += n,
            Err(WriteError::Blocked) => return sent,
            Err(e) => panic!("{e}"),
        }
        if sent == total {
            return sent;
        }
        pair.drive();
    }
}

#[test]
fn v2_window_exhaustion_recovers_after_reads() {
    let mut pair = Pair::go_v2();
    let (id, _) = pair.open_client_stream();
    let data = pattern(12, 2_000_000);
    let mut left = &data[..];
    let mut got = Vec::new();
    let mut rounds = 0;
    while got.len() < data.len() {
        if let Ok(n) = pair.client.write(id, left) {
            left = &left[n..];
        }
        pair.drive();
        // Read a little each round: the window reopens by UPD.
        let mut buf = [0u8; 40_000];
        if let Ok(n) = pair.server.read(id, &mut buf) {
            got.extend_from_slice(&buf[..n]);
        }
        assert!(pair.server.buffered_input() <= INITIAL_PEER_WINDOW as usize);
        rounds += 1;
        assert!(rounds < 10_000, "no progress");
    }
    assert_eq!(got, data);
}

#[test]
fn v2_receiver_sends_update_after_first_read_and_every_half_of_a_small_window() {
    let mut pair = Pair::go_v2();
    let (id, _) = pair.open_client_stream();
    pair.client.write(id, &pattern(13, 100_000)).unwrap();
    pair.drive();
    let mut buf = vec![0u8; 10];
    pair.server.read(id, &mut buf).unwrap();
    assert_eq!(
        transmit_frames(&mut pair.server),
        vec![Frame::Upd {
            stream_id: id,
            consumed: 10,
            window: 65_536
        }],
        "UPD after the first read"
    );
    let mut buf = vec![0u8; 32_000];
    pair.server.read(id, &mut buf).unwrap();
    assert_eq!(
        transmit_frames(&mut pair.server),
        vec![],
        "below half the window (Go's interval, for windows under 128 KiB)"
    );
    let mut buf = vec![0u8; 768];
    pair.server.read(id, &mut buf).unwrap();
    assert_eq!(
        transmit_frames(&mut pair.server),
        vec![Frame::Upd {
            stream_id: id,
            consumed: 32_778,
            window: 65_536
        }]
    );
}

#[test]
fn never_read_stream_in_v2_does_not_stop_another_stream() {
    let mut pair = Pair::v(Version::V2);
    let (idle, _) = pair.open_client_stream();
    let (busy, _) = pair.open_client_stream();
    write_all_until_blocked(&mut pair, idle, 1_000_000); // never read by the server
    let data = pattern(14, 3_000_000);
    let mut left = &data[..];
    let mut got = Vec::new();
    while got.len() < data.len() {
        if let Ok(n) = pair.client.write(busy, left) {
            left = &left[n..];
        }
        pair.drive();
        read_available(&mut pair.server, busy, &mut got).unwrap();
    }
    assert_eq!(got, data);
    assert!(pair.server.buffered_input() <= INITIAL_PEER_WINDOW as usize + 65_536);
}

#[test]
fn v1_send_buffers_are_bounded() {
    let config = Config {
        max_send_buffer: 300_000,
        max_stream_send_buffer: 200_000,
        ..Config::default()
    };
    let mut pair = Pair::new(config);
    let (a, _) = pair.open_client_stream();
    let (b, _) = pair.open_client_stream();
    assert_eq!(pair.client.write(a, &[0; 500_000]).unwrap(), 200_000);
    assert_eq!(
        pair.client.write(b, &[0; 500_000]).unwrap(),
        100_000,
        "session budget"
    );
    assert!(matches!(
        pair.client.write(b, &[0; 1]),
        Err(WriteError::Blocked)
    ));
    assert_eq!(pair.client.buffered_output(), 300_000);
    pair.drive();
    let events = pair.take_client_events();
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::StreamWritable { stream_id } if *stream_id == b)));
}

#[test]
fn control_frames_are_not_starved_behind_bulk_data() {
    // The server writes first on streams the client opened: no early-reply hold here.
    let mut pair = Pair::new(
        Config::default()
            .with_version(Version::V2)
            .with_early_reply_hold(Duration::ZERO),
    );
    let (up, _) = pair.open_client_stream();
    let (down, _) = pair.open_client_stream();
    pair.server.write(down, &pattern(15, 100_000)).unwrap();
    pair.drive();
    // The client queues a lot of data, then reads (owing an UPD) and a keepalive falls due.
    for _ in 0..8 {
        let _ = pair.client.write(up, &[7; 256 * 1024]);
    }
    pair.client.read(down, &mut [0; 100]).unwrap();
    pair.client
        .handle_timeout(pair.now + Duration::from_secs(10));
    let mut pipe = BytesMut::new();
    let mut slices = [IoSlice::new(&[]); 64];
    let n = pair.client.poll_transmit(&mut slices);
    for s in &slices[..n] {
        pipe.extend_from_slice(s);
    }
    let out = frames(&pipe, Version::V2);
    let upd = out
        .iter()
        .position(|f| matches!(f, Frame::Upd { .. }))
        .unwrap();
    let nop = out
        .iter()
        .position(|f| matches!(f, Frame::Nop { .. }))
        .unwrap();
    assert!(
        upd < 2 && nop < 2,
        "control frames first: UPD at {upd}, NOP at {nop}"
    );
}

#[test]
fn v2_writer_stalled_after_peer_fin_fails_instead_of_hanging() {
    let mut pair = Pair::v(Version::V2);
    let (id, _) = pair.open_client_stream();
    // The server finishes and releases the stream, as a Go peer's Close does: it will never
    // read again, so no UPD will come.
    pair.server.release_stream(id);
    pair.drive();
    write_all_until_blocked(&mut pair, id, 1_000_000);
    pair.drive();
    assert!(
        pair.client.buffered_output() > 0,
        "data stuck behind the window"
    );
    pair.advance(Duration::from_secs(29));
    assert!(!matches!(
        pair.client.write(id, b"x"),
        Err(WriteError::PeerStoppedReading(_))
    ));
    pair.advance(Duration::from_secs(2));
    assert!(matches!(
        pair.client.write(id, b"x"),
        Err(WriteError::PeerStoppedReading(_))
    ));
    assert_eq!(pair.client.buffered_output(), 0, "stalled data is dropped");
    assert!(pair.client.error().is_none(), "only the stream fails");
}

/// A version 2 peer that finished a stream and then grants its window a few bytes at a time:
/// every grant lets a frame out, the window shuts again and the stream stalls again. Each
/// stall used to queue one more deadline (kept until it expired, 30 s later), so a peer
/// sending small UPDs grew that queue by one entry per frame; a stream now holds one entry
/// however often it stalls, and still fails a full timeout after its last stall.
#[test]
fn v2_repeated_stalls_after_peer_fin_keep_one_deadline_per_stream() {
    const GRANTS: u32 = 10_000;
    let config = Config {
        version: Version::V2,
        keep_alive_disabled: true,
        ..Config::default()
    };
    let mut now = Pair::new(config.clone()).now;
    let mut client = Session::new(Side::Client, config, now).unwrap();
    let id = client.open_stream().unwrap();
    let mut sent = 0u32;
    let send = |client: &mut Session| {
        let mut wire = BytesMut::new();
        client.transmit_into(&mut wire);
        frames(&wire, Version::V2)
            .iter()
            .filter_map(|f| match f {
                Frame::Psh { data, .. } => Some(data.len() as u32),
                _ => None,
            })
            .sum::<u32>()
    };
    let input = |client: &mut Session, now: Instant, frame: Frame| {
        let mut buf = BytesMut::new();
        frame.encode(Version::V2, &mut buf).unwrap();
        client.handle_input(now, &mut buf).unwrap();
        assert!(buf.is_empty());
    };
    // Fill the initial window and the stream's send buffer; then the peer finishes.
    let data = pattern(3, 2 * INITIAL_PEER_WINDOW as usize);
    let mut queued = client.write(id, &data).unwrap();
    sent += send(&mut client);
    queued += client.write(id, &data[queued..]).unwrap();
    assert!(
        queued > sent as usize + GRANTS as usize,
        "data stays queued"
    );
    input(&mut client, now, Frame::Fin { stream_id: id });
    sent += send(&mut client);
    assert_eq!(client.stall_queue_len(), 1, "stalled once");

    // One byte of window at a time, each sent and stalled again.
    for _ in 0..GRANTS {
        now += Duration::from_micros(100);
        let upd = Frame::Upd {
            stream_id: id,
            consumed: sent,
            window: 1,
        };
        input(&mut client, now, upd);
        assert_eq!(send(&mut client), 1);
        sent += 1;
    }
    assert_eq!(client.stall_queue_len(), 1, "one deadline for the stream");

    // The stream fails 30 s after its last stall, not after its first.
    let last_stall = now;
    client.handle_timeout(last_stall + Duration::from_secs(29));
    assert!(!matches!(
        client.write(id, b"x"),
        Err(WriteError::PeerStoppedReading(_))
    ));
    assert_eq!(client.stall_queue_len(), 1, "requeued at its new deadline");
    client.handle_timeout(last_stall + Duration::from_secs(31));
    assert!(matches!(
        client.write(id, b"x"),
        Err(WriteError::PeerStoppedReading(_))
    ));
    assert_eq!(client.stall_queue_len(), 0);
    assert_eq!(client.buffered_output(), 0, "stalled data is dropped");
}

/// A writer blocked on the session send budget, retried over and over (every transport
/// readiness wakes it in a driver), waits in the session's list once: the list used to grow
/// by one entry per retry for as long as the budget stayed full. Once the budget frees, the
/// writer is told once.
#[test]
fn a_writer_blocked_on_the_send_budget_waits_in_the_list_once() {
    for version in [Version::V1, Version::V2] {
        let budget = 64 * 1024;
        let mut pair = Pair::new(Config {
            version,
            max_send_buffer: budget,
            max_stream_send_buffer: budget,
            ..Config::default()
        });
        let (a, _) = pair.open_client_stream();
        let (b, _) = pair.open_client_stream();
        // A fills the budget; nothing is transmitted meanwhile.
        let data = pattern(5, budget);
        assert_eq!(pair.client.write(a, &data).unwrap(), budget);
        for _ in 0..100_000 {
            assert!(matches!(
                pair.client.write(b, b"x"),
                Err(WriteError::Blocked)
            ));
        }
        assert_eq!(pair.client.send_waiter_count(), 1, "{version:?}");
        pair.take_client_events();
        pair.drive();
        let writable = pair
            .take_client_events()
            .iter()
            .filter(|e| matches!(e, Event::StreamWritable { stream_id } if *stream_id == b))
            .count();
        assert_eq!(writable, 1, "{version:?}: B told once");
        assert_eq!(pair.client.send_waiter_count(), 0);
        assert_eq!(pair.client.write(b, b"x").unwrap(), 1);
    }
}

/// Version 2: `stalled` streams whose peer reads nothing (their windows shut, 256 KiB more
/// queued on each), then a burst on fresh streams that fills the send budget, so one more
/// write is refused. Returns the pair, the refused stream, and whether a write within a fresh
/// stream's window was taken while only the stalled streams held the budget.
fn stalled_streams_then_a_burst(stalled: usize) -> (Pair, StreamId, bool) {
    const WINDOW: usize = 256 * 1024;
    // A receive budget large enough that no window is shrunk below its initial 256 KiB.
    let mut pair = Pair::new(
        Config::default()
            .with_version(Version::V2)
            .with_early_reply_hold(Duration::ZERO)
            .with_max_receive_buffer(64 << 20),
    );
    let ids: Vec<StreamId> = (0..stalled).map(|_| pair.open_client_stream().0).collect();
    for &id in &ids {
        // The window's worth goes out and sits unread on the server; the rest stays queued.
        let _ = pair.client.write(id, &[1; WINDOW]);
        pair.drive();
        let _ = pair.client.write(id, &[2; WINDOW]);
        pair.drive();
    }
    let fresh = pair.open_client_stream().0;
    let fresh_taken = matches!(pair.client.write(fresh, &[3; 1000]), Ok(1000));
    pair.drive();
    // Opened first: opening drives the pair, which would send the burst.
    let spare: Vec<StreamId> = (0..17).map(|_| pair.open_client_stream().0).collect();
    let mut burst = Vec::new();
    let mut refused = None;
    for &id in &spare {
        if pair.client.buffered_output() < pair.client.config().max_send_buffer {
            match pair.client.write(id, &[4; WINDOW]) {
                Ok(_) => burst.push(id),
                Err(e) => panic!("the burst's write within its window: {e}"),
            }
        } else {
            assert!(matches!(
                pair.client.write(id, &[5; 1]),
                Err(WriteError::Blocked)
            ));
            refused = Some(id);
            break;
        }
    }
    let refused = refused.expect("the burst filled the send budget");
    pair.take_client_events();
    // The burst goes out and is read; the stalled streams' data stays.
    pair.drive();
    for &id in &burst {
        let mut sink = Vec::new();
        read_available(&mut pair.server, id, &mut sink).unwrap();
    }
    pair.drive();
    (pair, refused, fresh_taken)
}

/// Streams stalled on the peer's window do not starve writers on other streams of send
/// budget: with 9 stalled streams (9 × 256 KiB would be more than half the budget), a writer
/// refused during a burst is woken once the burst has gone out, and its write is taken.
#[test]
fn stalled_streams_do_not_starve_other_writers_of_send_budget() {
    let (mut pair, refused, fresh_taken) = stalled_streams_then_a_burst(9);
    assert!(fresh_taken);
    assert!(
        pair.take_client_events()
            .iter()
            .any(|e| matches!(e, Event::StreamWritable { stream_id } if *stream_id == refused)),
        "the refused writer was never woken: {} bytes buffered",
        pair.client.buffered_output()
    );
    assert_eq!(pair.client.write(refused, &[5; 1]).unwrap(), 1);
    assert!(
        pair.client.buffered_output() <= pair.client.config().max_send_buffer / 2 + 1,
        "bytes beyond the windows take half the budget at most"
    );
}

/// With 16 stalled streams (their 4 MiB would be the whole budget), other streams can still
/// write: the stalled ones hold half of it at most.
#[test]
fn sixteen_stalled_streams_leave_room_for_the_others() {
    let (mut pair, refused, fresh_taken) = stalled_streams_then_a_burst(16);
    assert!(
        fresh_taken,
        "a write within a fresh stream's window was refused"
    );
    assert!(pair
        .take_client_events()
        .iter()
        .any(|e| matches!(e, Event::StreamWritable { stream_id } if *stream_id == refused)));
}
