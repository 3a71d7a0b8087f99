//! Stream id exhaustion, accept backlog and stream limits.

use super::*;
use crate::{InputPause, OpenError};

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
fn a_full_backlog_pauses_input_until_the_application_accepts() {
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
    for &id in &ids {
        pair.client
            .write(id, id.as_u32().to_string().as_bytes())
            .unwrap();
    }
    pair.drive();
    assert_eq!(pair.server.input_pause(), Some(InputPause::AcceptBacklog));
    assert!(
        !pair.to_server.is_empty(),
        "the rest waits in the transport"
    );
    assert_eq!(pair.server.snapshot().accept_backlog, 4);
    // Accepting one lets the next SYN in; nothing is refused or lost.
    let mut accepted = Vec::new();
    while accepted.len() < ids.len() {
        let id = pair.server.accept_stream().expect("a stream waits");
        accepted.push(id);
        pair.drive();
    }
    assert_eq!(accepted, ids);
    assert_eq!(pair.server.stats().streams_refused, 0);
    assert_eq!(pair.server.input_pause(), None);
    for &id in &ids {
        let mut got = Vec::new();
        read_available(&mut pair.server, id, &mut got).unwrap();
        assert_eq!(got, id.as_u32().to_string().as_bytes());
    }
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
    // Refusals happen only at the stream limit.
    let mut pair = Pair::new(Config {
        max_streams: 1,
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
        max_streams: 1,
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
        // Prepares the queue without handing anything over (nothing is `transmitted`).
        let _ = pair.client.poll_transmit(&mut slices);
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
