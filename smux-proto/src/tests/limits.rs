//! Stream id exhaustion, accept backlog and stream limits.

use super::*;
use crate::OpenError;

#[test]
fn exhausted_ids_go_away() {
    let mut pair = Pair::new(Config::default());
    pair.client.set_last_stream_id(u32::MAX - 4);
    assert_eq!(pair.client.open_stream().unwrap().as_u32(), u32::MAX - 2);
    assert_eq!(pair.client.open_stream().unwrap().as_u32(), u32::MAX);
    assert!(matches!(pair.client.open_stream(), Err(OpenError::GoAway)));
    assert!(matches!(pair.client.open_stream(), Err(OpenError::GoAway)));
    // Existing streams keep working.
    pair.drive();
    let id = pair.server.accept_stream().unwrap();
    pair.client.write(id, b"still fine").unwrap();
    pair.drive();
    let mut got = Vec::new();
    read_available(&mut pair.server, id, &mut got).unwrap();
    assert_eq!(got, b"still fine");
}

#[test]
fn backlog_overflow_is_refused_with_fin() {
    let mut pair = Pair::with_configs(
        Config::default(),
        Config {
            accept_backlog: 4,
            ..Config::default()
        },
    );
    let ids: Vec<StreamId> = (0..10)
        .map(|_| pair.client.open_stream().unwrap())
        .collect();
    pair.drive();
    assert_eq!(pair.server.stats().streams_refused, 6);
    // The refused streams see the server's FIN at once: end of stream.
    for &id in &ids[4..] {
        assert_eq!(
            pair.client.read(id, &mut [0; 8]).unwrap(),
            0,
            "stream {id} refused"
        );
    }
    // The connection is not stalled: accepted streams still carry data.
    let accepted: Vec<StreamId> = std::iter::from_fn(|| pair.server.accept_stream()).collect();
    assert_eq!(accepted, &ids[..4]);
    pair.client.write(ids[0], b"hi").unwrap();
    pair.drive();
    let mut got = Vec::new();
    read_available(&mut pair.server, ids[0], &mut got).unwrap();
    assert_eq!(got, b"hi");
    // Accepting frees backlog room.
    let late = pair.client.open_stream().unwrap();
    pair.drive();
    assert_eq!(pair.server.accept_stream(), Some(late));
}

#[test]
fn stream_limit_refuses_syns_and_local_opens() {
    let mut pair = Pair::new(Config {
        max_streams: 3,
        ..Config::default()
    });
    for _ in 0..3 {
        pair.open_client_stream();
    }
    assert!(matches!(
        pair.client.open_stream(),
        Err(OpenError::TooManyStreams { limit: 3 })
    ));
    // A peer ignoring the limit is refused.
    let mut syn = BytesMut::new();
    Frame::Syn {
        stream_id: StreamId::new(2),
    }
    .encode(Version::V1, &mut syn)
    .unwrap();
    pair.client.handle_input(pair.now, &mut syn).unwrap();
    assert_eq!(pair.client.accept_stream(), None);
    assert_eq!(pair.client.stats().streams_refused, 1);
    assert_eq!(
        transmit_frames(&mut pair.client),
        vec![Frame::Fin {
            stream_id: StreamId::new(2)
        }]
    );
}

#[test]
fn syn_flood_without_reading_pauses_input_instead_of_growing_memory() {
    let mut pair = Pair::new(Config {
        accept_backlog: 0,
        ..Config::default()
    });
    let mut flood = BytesMut::new();
    for i in 0..100_000u32 {
        Frame::Syn {
            stream_id: StreamId::new(2 * i + 2),
        }
        .encode(Version::V1, &mut flood)
        .unwrap();
    }
    // The attacker never reads our refusals.
    pair.client.handle_input(pair.now, &mut flood).unwrap();
    assert!(!pair.client.wants_read());
    let refused = pair.client.stats().streams_refused;
    assert!(refused < 10_000, "refused {refused} before pausing");
    assert!(!flood.is_empty(), "the rest stays in the transport");
    // Once the refusals are sent, reading resumes.
    transmit_frames(&mut pair.client);
    assert!(pair.client.wants_read());
}

#[test]
fn syn_flood_against_a_blocked_transport_pauses_input() {
    // As a driver does it: after each input, the session is asked for output, which the
    // transport (the attacker, who reads nothing) never takes.
    let mut pair = Pair::new(Config {
        accept_backlog: 0,
        ..Config::default()
    });
    let mut flood = BytesMut::new();
    for i in 0..200_000u32 {
        Frame::Syn {
            stream_id: StreamId::new(2 * i + 2),
        }
        .encode(Version::V1, &mut flood)
        .unwrap();
    }
    for _ in 0..1000 {
        pair.client.handle_input(pair.now, &mut flood).unwrap();
        let mut slices = [IoSlice::new(&[]); 16];
        pair.client.poll_transmit(&mut slices);
        if !pair.client.wants_read() {
            break;
        }
    }
    assert!(!pair.client.wants_read());
    // Refusals are held: a transmit queue's worth (256 KiB of 8-byte FINs) and the control
    // queue limit (4096), not the whole flood.
    let refused = pair.client.stats().streams_refused;
    assert!(
        refused <= 256 * 1024 / 8 + 4096 + 1,
        "refused {refused} before pausing"
    );
    assert!(!flood.is_empty(), "the rest stays in the transport");
    // Once the refusals are sent, reading resumes, and every refusal went out.
    let fins = transmit_frames(&mut pair.client);
    assert_eq!(fins.len() as u64, refused);
    assert!(pair.client.wants_read());
}

#[test]
fn hundred_thousand_idle_streams_fit_in_the_core() {
    let mut pair = Pair::new(Config {
        max_streams: 200_000,
        accept_backlog: 200_000,
        ..Config::default()
    });
    for _ in 0..100_000 {
        pair.client.open_stream().unwrap();
    }
    pair.drive();
    assert_eq!(pair.server.stream_count(), 100_000);
    assert_eq!(pair.client.stream_count(), 100_000);
}
