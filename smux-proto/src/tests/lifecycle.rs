//! Opening, data transfer, half-close, release and graceful close.

use super::*;
use crate::{OpenError, WriteError};

#[test]
fn client_opens_odd_ids_and_server_accepts_them() {
    let mut pair = Pair::new(Config::default());
    let (a, _) = pair.open_client_stream();
    let (b, _) = pair.open_client_stream();
    assert_eq!((a.as_u32(), b.as_u32()), (3, 5));
    let events = pair.take_server_events();
    assert!(matches!(events[0], Event::StreamOpened { stream_id } if stream_id == a));
    assert!(matches!(events[1], Event::StreamOpened { stream_id } if stream_id == b));
    assert_eq!(pair.server.stats().streams_accepted, 2);
    assert_eq!(pair.client.stats().streams_opened, 2);
}

#[test]
fn server_opens_even_ids() {
    let mut pair = Pair::new(Config::default());
    let id = pair.server.open_stream().unwrap();
    assert_eq!(id.as_u32(), 2);
    pair.drive();
    assert_eq!(pair.client.accept_stream(), Some(id));
    assert_eq!(pair.server.open_stream().unwrap().as_u32(), 4);
}

#[test]
fn syn_is_sent_before_the_data_written_right_after_open() {
    let mut pair = Pair::new(Config::default());
    let id = pair.client.open_stream().unwrap();
    pair.client.write(id, b"early").unwrap();
    let out = transmit_frames(&mut pair.client);
    assert_eq!(out[0], Frame::Syn { stream_id: id });
    assert!(matches!(&out[1], Frame::Psh { data, .. } if &data[..] == b"early"));
}

fn exchange_both_ways(version: Version, size: usize) {
    let mut pair = Pair::v(version);
    let (id, _) = pair.open_client_stream();
    let up = pattern(1, size);
    let down = pattern(2, size);
    let (mut got_up, mut got_down) = (Vec::new(), Vec::new());
    let (mut up_left, mut down_left) = (&up[..], &down[..]);
    while got_up.len() < size || got_down.len() < size {
        if !up_left.is_empty() {
            if let Ok(n) = pair.client.write(id, up_left) {
                up_left = &up_left[n..];
            }
        }
        if !down_left.is_empty() {
            if let Ok(n) = pair.server.write(id, down_left) {
                down_left = &down_left[n..];
            }
        }
        pair.drive();
        read_available(&mut pair.server, id, &mut got_up).unwrap();
        read_available(&mut pair.client, id, &mut got_down).unwrap();
    }
    assert_eq!(checksum(&got_up), checksum(&up));
    assert_eq!(checksum(&got_down), checksum(&down));
    assert_eq!(got_up, up);
    assert_eq!(got_down, down);
}

#[test]
fn data_flows_both_ways_intact_v1() {
    exchange_both_ways(Version::V1, 3 * 1024 * 1024 + 17);
}

#[test]
fn data_flows_both_ways_intact_v2() {
    exchange_both_ways(Version::V2, 3 * 1024 * 1024 + 17);
}

#[test]
fn partial_writes_of_one_byte_deliver_everything() {
    for version in [Version::V1, Version::V2] {
        let mut pair = Pair::v(version);
        pair.write_limit = 1;
        let (id, _) = pair.open_client_stream();
        let data = pattern(3, 5000);
        write_all(&mut pair, Side::Client, id, &data);
        pair.client.finish(id).unwrap();
        pair.drive();
        let mut got = Vec::new();
        assert!(read_available(&mut pair.server, id, &mut got).unwrap());
        assert_eq!(got, data);
    }
}

#[test]
fn half_close_keeps_reading() {
    for version in [Version::V1, Version::V2] {
        let mut pair = Pair::v(version);
        let (id, _) = pair.open_client_stream();
        pair.client.write(id, b"request").unwrap();
        pair.client.finish(id).unwrap();
        pair.drive();
        let mut req = Vec::new();
        assert!(
            read_available(&mut pair.server, id, &mut req).unwrap(),
            "server sees EOF"
        );
        assert_eq!(req, b"request");
        // The client's write half is closed, its read half is not.
        assert!(matches!(
            pair.client.write(id, b"x"),
            Err(WriteError::Finished(_))
        ));
        let response = pattern(4, 2_000_000); // beyond any window: UPDs must still flow
        let mut left = &response[..];
        let mut got = Vec::new();
        loop {
            if !left.is_empty() {
                if let Ok(n) = pair.server.write(id, left) {
                    left = &left[n..];
                    if left.is_empty() {
                        pair.server.finish(id).unwrap();
                    }
                }
            }
            pair.drive();
            if read_available(&mut pair.client, id, &mut got).unwrap() {
                break;
            }
        }
        assert_eq!(got, response);
    }
}

#[test]
fn fin_follows_the_data_written_before_it() {
    let mut pair = Pair::new(Config::default());
    let (id, _) = pair.open_client_stream();
    let data = pattern(5, 200_000);
    pair.client.write(id, &data).unwrap();
    pair.client.finish(id).unwrap();
    let out = transmit_frames(&mut pair.client);
    let fin_at = out
        .iter()
        .position(|f| matches!(f, Frame::Fin { .. }))
        .unwrap();
    assert_eq!(fin_at, out.len() - 1, "FIN is the last frame");
    let sent: usize = out
        .iter()
        .map(|f| match f {
            Frame::Psh { data, .. } => data.len(),
            _ => 0,
        })
        .sum();
    assert_eq!(sent, data.len());
}

#[test]
fn thousand_streams_echo_with_checksums() {
    for version in [Version::V1, Version::V2] {
        let mut pair = Pair::v(version);
        let ids: Vec<StreamId> = (0..1000)
            .map(|_| pair.client.open_stream().unwrap())
            .collect();
        for (i, &id) in ids.iter().enumerate() {
            pair.client
                .write(id, &pattern(i as u64, 100 + i * 7))
                .unwrap();
            pair.client.finish(id).unwrap();
        }
        pair.drive();
        // The server echoes every stream back and finishes it.
        let mut accepted = 0;
        while let Some(id) = pair.server.accept_stream() {
            let mut got = Vec::new();
            assert!(read_available(&mut pair.server, id, &mut got).unwrap());
            write_all(&mut pair, Side::Server, id, &got);
            pair.server.finish(id).unwrap();
            pair.server.release_stream(id);
            accepted += 1;
        }
        assert_eq!(accepted, 1000);
        pair.drive();
        for (i, &id) in ids.iter().enumerate() {
            let mut got = Vec::new();
            assert!(read_available(&mut pair.client, id, &mut got).unwrap());
            assert_eq!(
                checksum(&got),
                checksum(&pattern(i as u64, 100 + i * 7)),
                "stream {id}"
            );
            pair.client.release_stream(id);
        }
        pair.drive();
        assert_eq!(pair.client.stream_count(), 0);
        assert_eq!(pair.server.stream_count(), 0);
    }
}

#[test]
fn release_sends_written_data_then_fin_and_drops_unread_data() {
    // The server writes first on a stream the client opened: no early-reply hold here.
    let mut pair = Pair::new(Config::default().with_early_reply_hold(Duration::ZERO));
    let (id, _) = pair.open_client_stream();
    pair.server.write(id, &pattern(6, 10_000)).unwrap();
    pair.drive();
    assert_eq!(pair.client.buffered_input(), 10_000);
    pair.client.write(id, b"last words").unwrap();
    pair.client.release_stream(id);
    assert_eq!(pair.client.buffered_input(), 0, "unread data is dropped");
    assert!(matches!(
        pair.client.read(id, &mut [0; 4]),
        Err(ReadError::UnknownStream(_))
    ));
    pair.drive();
    let mut got = Vec::new();
    assert!(read_available(&mut pair.server, id, &mut got).unwrap());
    assert_eq!(got, b"last words");
    assert_eq!(
        pair.client.stream_count(),
        0,
        "a released stream is forgotten after its FIN"
    );
}

#[test]
fn readable_event_follows_a_blocked_read() {
    let mut pair = Pair::new(Config::default());
    let (id, _) = pair.open_client_stream();
    pair.drive();
    pair.take_server_events();
    assert!(matches!(
        pair.server.read(id, &mut [0; 8]),
        Err(ReadError::Blocked)
    ));
    pair.client.write(id, b"ping").unwrap();
    pair.drive();
    let events = pair.take_server_events();
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::StreamReadable { stream_id } if *stream_id == id)));
}

#[test]
fn writable_event_follows_a_blocked_write() {
    let mut pair = Pair::new(Config {
        max_stream_send_buffer: 1000,
        ..Config::default()
    });
    let (id, _) = pair.open_client_stream();
    assert_eq!(pair.client.write(id, &[1; 4000]).unwrap(), 1000);
    assert!(matches!(
        pair.client.write(id, &[1; 10]),
        Err(WriteError::Blocked)
    ));
    pair.drive();
    let events = pair.take_client_events();
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::StreamWritable { stream_id } if *stream_id == id)));
    assert_eq!(pair.client.write(id, &[1; 10]).unwrap(), 10);
}

#[test]
fn zero_copy_chunks_round_trip() {
    let mut pair = Pair::new(Config::default());
    let (id, _) = pair.open_client_stream();
    let data = bytes::Bytes::from(pattern(7, 100_000));
    let mut rest = data.clone();
    while !rest.is_empty() {
        match pair.client.write_chunk(id, &rest) {
            Ok(n) => {
                let _ = rest.split_to(n);
            }
            Err(WriteError::Blocked) => pair.drive(),
            Err(e) => panic!("{e}"),
        }
    }
    pair.client.finish(id).unwrap();
    pair.drive();
    let mut got = Vec::new();
    while let Some(chunk) = pair.server.read_chunk(id, 10_000).unwrap() {
        assert!(chunk.len() <= 10_000);
        got.extend_from_slice(&chunk);
    }
    assert_eq!(got, data);
}

#[test]
fn graceful_close_delivers_everything_then_reports_closed() {
    let mut pair = Pair::new(Config::default());
    let (id, _) = pair.open_client_stream();
    let data = pattern(8, 500_000);
    pair.client.write(id, &data[..200_000]).unwrap();
    pair.client.close();
    assert!(matches!(
        pair.client.open_stream(),
        Err(OpenError::SessionClosed(Error::LocallyClosed))
    ));
    assert!(!pair.client.is_closed(), "closing waits for the data");
    pair.drive();
    assert!(pair.client.is_closed());
    assert!(matches!(
        closed_error(&pair.take_client_events()),
        Some(Error::LocallyClosed)
    ));
    let mut got = Vec::new();
    assert!(
        read_available(&mut pair.server, id, &mut got).unwrap(),
        "FIN after the data"
    );
    assert_eq!(got, &data[..200_000]);
}

#[test]
fn transport_end_fails_every_stream_after_its_data() {
    // The server writes first on a stream the client opened: no early-reply hold here.
    let mut pair = Pair::new(Config::default().with_early_reply_hold(Duration::ZERO));
    let (id, _) = pair.open_client_stream();
    pair.server.write(id, b"tail").unwrap();
    pair.drive();
    let mut empty = BytesMut::new();
    assert!(matches!(
        pair.client.handle_eof(pair.now, &mut empty),
        Err(Error::PeerClosed)
    ));
    let mut got = Vec::new();
    let end = read_available(&mut pair.client, id, &mut got);
    assert_eq!(
        got, b"tail",
        "data received before the end is still readable"
    );
    assert!(matches!(
        end,
        Err(ReadError::SessionClosed(Error::PeerClosed))
    ));
    assert!(matches!(
        pair.client.write(id, b"x"),
        Err(WriteError::SessionClosed(Error::PeerClosed))
    ));
    let events: Vec<Event> = std::iter::from_fn(|| pair.client.poll_event()).collect();
    assert!(matches!(closed_error(&events), Some(Error::PeerClosed)));
}

#[test]
fn end_of_input_inside_a_frame_is_a_truncated_frame() {
    let mut pair = Pair::new(Config::default());
    let mut partial = BytesMut::from(&[1u8, 2, 10, 0, 3, 0, 0, 0, 1, 2][..]);
    assert!(matches!(
        pair.server.handle_eof(pair.now, &mut partial),
        Err(Error::TruncatedFrame { received: 10 })
    ));
}

#[test]
fn transport_error_ends_the_session() {
    let mut pair = Pair::new(Config::default());
    let (id, _) = pair.open_client_stream();
    pair.client.handle_transport_error(std::io::Error::new(
        std::io::ErrorKind::ConnectionReset,
        "reset",
    ));
    let err = pair.client.error().unwrap().clone();
    assert!(matches!(err, Error::Transport(_)));
    assert_eq!(err.io_kind(), std::io::ErrorKind::ConnectionReset);
    assert!(matches!(
        pair.client.read(id, &mut [0; 1]),
        Err(ReadError::SessionClosed(_))
    ));
}

#[test]
fn stats_count_frames_bytes_and_streams() {
    let mut pair = Pair::new(Config::default());
    let (id, _) = pair.open_client_stream();
    pair.client.write(id, &[0; 100]).unwrap();
    pair.client.finish(id).unwrap();
    pair.drive();
    let c = pair.client.stats();
    let s = pair.server.stats();
    assert_eq!(c.frames_out, 3); // SYN, PSH, FIN
    assert_eq!(c.bytes_out, 3 * 8 + 100);
    assert_eq!(s.frames_in, 3);
    assert_eq!(s.bytes_in, c.bytes_out);
    assert_eq!(c.streams_opened, 1);
    assert_eq!(s.streams_accepted, 1);
}

#[test]
fn duplicate_syn_and_frames_for_unknown_streams_are_ignored() {
    let mut pair = Pair::new(Config::default());
    let (id, _) = pair.open_client_stream();
    let mut input = BytesMut::new();
    for frame in [
        Frame::Syn { stream_id: id },
        Frame::Psh {
            stream_id: StreamId::new(99),
            data: bytes::Bytes::from_static(b"lost"),
        },
        Frame::Fin {
            stream_id: StreamId::new(101),
        },
    ] {
        frame.encode(Version::V1, &mut input).unwrap();
    }
    pair.server.handle_input(pair.now, &mut input).unwrap();
    assert!(input.is_empty());
    assert_eq!(
        pair.server.accept_stream(),
        None,
        "no second stream from a duplicate SYN"
    );
    assert_eq!(pair.server.buffered_input(), 0);
    assert!(pair.server.error().is_none());
}

#[test]
fn data_survives_interleaving_with_fair_scheduling() {
    // One bulk stream and one small stream: the small one's data goes out within the first
    // frames, not after the bulk.
    let mut pair = Pair::new(Config::default());
    let (bulk, _) = pair.open_client_stream();
    let (small, _) = pair.open_client_stream();
    pair.client.write(bulk, &pattern(9, 256 * 1024)).unwrap();
    pair.client.write(small, b"urgent").unwrap();
    let out = transmit_frames(&mut pair.client);
    let at = out
        .iter()
        .position(|f| matches!(f, Frame::Psh { stream_id, .. } if *stream_id == small))
        .unwrap();
    assert!(at <= 1, "small stream waited behind {at} frames");
}

#[test]
fn streams_waiting_in_the_backlog_survive_the_peer_closing() {
    let mut pair = Pair::new(Config::default());
    let id = pair.client.open_stream().unwrap();
    pair.client.write(id, b"sent before the end").unwrap();
    pair.client.finish(id).unwrap();
    pair.drive();
    let mut empty = BytesMut::new();
    assert!(pair.server.handle_eof(pair.now, &mut empty).is_err());
    assert_eq!(
        pair.server.accept_stream(),
        Some(id),
        "still acceptable after the end"
    );
    let mut got = Vec::new();
    assert!(
        read_available(&mut pair.server, id, &mut got).unwrap(),
        "its FIN had arrived"
    );
    assert_eq!(got, b"sent before the end");
    assert_eq!(pair.server.accept_stream(), None);
}

#[test]
fn a_transmitted_fin_stays_flushed_after_the_session_ends() {
    let mut pair = Pair::new(Config::default());
    let (done, _) = pair.open_client_stream();
    let (pending, _) = pair.open_client_stream();
    pair.client.write(done, b"all of it").unwrap();
    pair.client.finish(done).unwrap();
    pair.drive();
    pair.client.write(pending, b"never sent").unwrap();
    pair.client.finish(pending).unwrap();
    let mut empty = BytesMut::new();
    assert!(pair.client.handle_eof(pair.now, &mut empty).is_err());
    // The first stream's data and FIN went out before the end: finishing and flushing it
    // again succeed. The second one's did not: both report the session error.
    assert!(pair.client.finish(done).is_ok());
    assert!(matches!(pair.client.poll_flushed(done), Ok(Some(_))));
    assert!(pair.client.finish(pending).is_ok(), "finish is idempotent");
    assert!(matches!(
        pair.client.poll_flushed(pending),
        Err(WriteError::SessionClosed(Error::PeerClosed))
    ));
}

#[test]
fn transmit_into_hands_over_everything_pending() {
    let mut pair = Pair::new(Config::default());
    let id = pair.client.open_stream().unwrap();
    pair.client.write(id, &pattern(16, 100_000)).unwrap();
    pair.client.finish(id).unwrap();
    let mut out = BytesMut::new();
    let n = pair.client.transmit_into(&mut out);
    assert_eq!(n, out.len());
    assert_eq!(n, 8 + (8 * 4 + 100_000) + 8, "SYN, four PSH, FIN");
    assert_eq!(pair.client.stats().bytes_out, n as u64);
    assert!(!pair.client.wants_write());
    assert_eq!(pair.client.transmit_into(&mut out), 0);
}

/// `poll_transmit_chunks` hands over the same bytes as `poll_transmit`, counts them as sent,
/// and a FIN it handed over counts as transmitted.
#[test]
fn transmit_chunks_match_transmit_slices() {
    use std::collections::VecDeque;

    // Within the stream's send buffer, so one write takes it all.
    let data = pattern(7, 200 * 1024);
    let script = |session: &mut Session| {
        let id = session.open_stream().unwrap();
        assert_eq!(session.write(id, &data).unwrap(), data.len());
        session.finish(id).unwrap();
        id
    };
    let mut by_slices = Pair::new(Config::default());
    let id = script(&mut by_slices.client);
    let mut by_chunks = Pair::new(Config::default());
    script(&mut by_chunks.client);

    let mut expected = BytesMut::new();
    let mut got = Vec::new();
    loop {
        let n = by_slices.client.transmit_into(&mut expected);
        let mut chunks = VecDeque::new();
        let m = by_chunks.client.poll_transmit_chunks(&mut chunks);
        assert_eq!(n, m);
        assert_eq!(m, chunks.iter().map(|c| c.len()).sum::<usize>());
        chunks.iter().for_each(|c| got.extend_from_slice(c));
        if n == 0 {
            break;
        }
    }
    assert_eq!(got, &expected[..]);
    assert!(!by_chunks.client.wants_write());
    assert_eq!(by_chunks.client.stats().bytes_out, got.len() as u64);
    assert!(
        by_chunks.client.poll_flushed(id).unwrap() == Some(by_chunks.client.output_offset()),
        "FIN handed over, last"
    );
    let frames = frames(&got, Version::V1);
    assert_eq!(frames.last(), Some(&Frame::Fin { stream_id: id }));
}

/// A stream's flush waits for its own frames only: the end `poll_flushed` gives for a small
/// write queued after another stream's large one lies before the large one's end (the
/// scheduler's light lane takes it first), and transmitting up to it is enough.
#[test]
fn a_flush_end_covers_the_streams_own_frames_only() {
    let mut pair = Pair::new(Config::default());
    let (bulk, _) = pair.open_client_stream();
    let (small, _) = pair.open_client_stream();
    pair.client.write(bulk, &pattern(1, 200_000)).unwrap();
    pair.client.write(small, b"ping").unwrap();
    assert_eq!(pair.client.poll_flushed(small).unwrap(), None, "not framed");
    assert_eq!(pair.client.poll_flushed(bulk).unwrap(), None);
    // Frame everything without handing any of it over.
    let mut slices = [IoSlice::new(&[]); 64];
    let n = pair.client.poll_transmit(&mut slices);
    let queued: usize = slices[..n].iter().map(|s| s.len()).sum();
    let base = pair.client.output_offset();
    let small_end = pair.client.poll_flushed(small).unwrap().expect("framed");
    let bulk_end = pair.client.poll_flushed(bulk).unwrap().expect("framed");
    assert_eq!(
        bulk_end,
        base + queued as u64,
        "the bulk stream's last frame is last"
    );
    // The small write goes first, ahead of the bulk stream's frames: 8 + 4.
    assert_eq!(small_end, base + 8 + 4);
    assert!(small_end < bulk_end);
    // A stream that has written nothing is flushed where it was opened.
    let (idle, _) = pair.open_client_stream();
    assert!(pair.client.poll_flushed(idle).unwrap().unwrap() <= pair.client.output_offset());
}
