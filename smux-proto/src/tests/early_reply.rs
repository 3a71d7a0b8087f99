//! The early-reply hold: what a session writes on a stream the peer just opened waits until
//! the peer sends something on it, or `Config::early_reply_hold` passes (Go registers a
//! stream it opens only after its SYN is written, and drops what arrives before).

use super::*;

const HOLD: Duration = crate::DEFAULT_EARLY_REPLY_HOLD;

/// The client opens a stream and the server accepts it; nothing else moves.
fn opened(pair: &mut Pair) -> StreamId {
    let id = pair.client.open_stream().unwrap();
    pair.drive();
    assert_eq!(pair.server.accept_stream(), Some(id));
    id
}

fn held(session: &Session, id: StreamId) -> bool {
    let snapshot = session.snapshot();
    let stream = snapshot.streams.iter().find(|s| s.id == id).unwrap();
    stream.reply_held
}

/// A server that speaks first, to a peer that says nothing: its greeting and FIN wait for
/// the hold, and go out when it ends.
#[test]
fn a_reply_to_a_silent_peer_waits_for_the_hold() {
    for version in [Version::V1, Version::V2] {
        let mut pair = Pair::v(version);
        let id = opened(&mut pair);
        assert!(held(&pair.server, id));
        assert_eq!(pair.server.poll_timeout(), Some(pair.now + HOLD));
        pair.server.write(id, b"220 greetings").unwrap();
        pair.server.finish(id).unwrap();
        pair.server.release_stream(id);
        assert!(!pair.server.wants_write(), "{version:?}: held");
        pair.drive();
        let mut got = Vec::new();
        assert!(!read_available(&mut pair.client, id, &mut got).unwrap());
        assert!(got.is_empty());

        pair.advance(HOLD - Duration::from_millis(1));
        assert!(!read_available(&mut pair.client, id, &mut got).unwrap());
        pair.advance(Duration::from_millis(1));
        assert!(read_available(&mut pair.client, id, &mut got).unwrap());
        assert_eq!(got, b"220 greetings", "{version:?}");
        assert_eq!(
            pair.server.stream_count(),
            0,
            "{version:?}: reaped once sent"
        );
    }
}

/// Anything the peer sends on the stream ends the hold at once: data, or its FIN.
#[test]
fn the_peers_first_frame_on_the_stream_ends_the_hold() {
    for version in [Version::V1, Version::V2] {
        for peer_sends_fin in [false, true] {
            let mut pair = Pair::v(version);
            let id = opened(&mut pair);
            pair.server.write(id, b"hello").unwrap();
            pair.drive();
            if peer_sends_fin {
                pair.client.finish(id).unwrap();
            } else {
                pair.client.write(id, b"hi").unwrap();
            }
            pair.drive();
            assert!(!held(&pair.server, id));
            let mut got = Vec::new();
            read_available(&mut pair.client, id, &mut got).unwrap();
            assert_eq!(got, b"hello", "{version:?}, FIN {peer_sends_fin}");
        }
    }
}

/// A peer that speaks first never sees a hold: its SYN and data arrive together, and the
/// reply goes out at once (request/response, an echo, a proxy's first bytes).
#[test]
fn a_peer_that_speaks_first_is_answered_at_once() {
    let mut pair = Pair::new(Config::default());
    let id = pair.client.open_stream().unwrap();
    pair.client.write(id, b"GET /").unwrap();
    pair.drive();
    assert_eq!(pair.server.accept_stream(), Some(id));
    assert!(!held(&pair.server, id));
    pair.server.write(id, b"200 OK").unwrap();
    assert!(pair.server.wants_write());
    pair.drive();
    let mut got = Vec::new();
    read_available(&mut pair.client, id, &mut got).unwrap();
    assert_eq!(got, b"200 OK");
}

/// Zero turns the hold off; streams this side opens are never held.
#[test]
fn no_hold_when_zero_or_for_our_own_streams() {
    let mut pair = Pair::new(Config::default().with_early_reply_hold(Duration::ZERO));
    let id = opened(&mut pair);
    assert!(!held(&pair.server, id));
    pair.server.write(id, b"at once").unwrap();
    pair.drive();
    let mut got = Vec::new();
    read_available(&mut pair.client, id, &mut got).unwrap();
    assert_eq!(got, b"at once");

    let mut pair = Pair::new(Config::default());
    let id = opened(&mut pair);
    assert!(!held(&pair.client, id), "the opener's side is not held");
    pair.client.write(id, b"first").unwrap();
    assert!(pair.client.wants_write());
}

/// Closing the session waits for held streams (at most the hold), then sends their data
/// and FIN before the session ends; a failing session drops them like any output.
#[test]
fn close_sends_held_replies_when_the_hold_ends() {
    let mut pair = Pair::new(Config::default());
    let id = opened(&mut pair);
    pair.server.write(id, b"bye").unwrap();
    pair.server.close();
    pair.drive();
    assert!(pair.server.is_closing() && !pair.server.is_closed());
    assert_eq!(pair.server.poll_timeout(), Some(pair.now + HOLD));
    pair.advance(HOLD);
    assert!(pair.server.is_closed());
    let mut got = Vec::new();
    assert!(read_available(&mut pair.client, id, &mut got).unwrap());
    assert_eq!(got, b"bye");

    let mut pair = Pair::new(Config::default());
    let id = opened(&mut pair);
    pair.server.write(id, b"lost").unwrap();
    let mut eof = BytesMut::new();
    let _ = pair.server.handle_eof(pair.now, &mut eof);
    assert!(pair.server.is_closed());
    assert_eq!(pair.server.poll_timeout(), None, "no hold left to time");
}

/// A burst of streams opened at once is held as one: one deadline after another, each
/// released in order, whatever the size of the burst.
#[test]
fn holds_of_a_burst_end_in_order() {
    let mut pair = Pair::new(Config::default());
    let mut ids = Vec::new();
    for step in 0..100u64 {
        let id = opened(&mut pair);
        pair.server.write(id, &step.to_le_bytes()).unwrap();
        ids.push(id);
        pair.now += Duration::from_micros(100);
    }
    let first = pair.now - Duration::from_micros(100 * 100);
    assert_eq!(pair.server.poll_timeout(), Some(first + HOLD));
    // Half-way through the deadlines, the first half is out, the second is not.
    pair.now = first + HOLD + Duration::from_micros(100 * 49);
    pair.server.handle_timeout(pair.now);
    pair.drive();
    for (step, &id) in ids.iter().enumerate() {
        let mut got = Vec::new();
        read_available(&mut pair.client, id, &mut got).unwrap();
        if step < 50 {
            assert_eq!(got, (step as u64).to_le_bytes(), "stream #{step}");
        } else {
            assert!(got.is_empty(), "stream #{step} sent early");
        }
    }
}

/// A stream dropped without a word (a server turning a client away) is not held: its FIN goes
/// at once and the stream leaves the table at once. Like a refusal's, that FIN goes once more
/// when the peer next sends on the stream (Go may have missed the first), and never again.
#[test]
fn a_stream_dropped_without_a_word_gets_its_fin_at_once_and_again_if_missed() {
    let mut pair = Pair::new(Config::default());
    let id = opened(&mut pair);
    pair.server.release_stream(id);
    assert_eq!(pair.server.stream_count(), 0, "gone at once");
    assert_eq!(
        transmit_frames(&mut pair.server),
        [Frame::Fin { stream_id: id }],
        "the first FIN, lost on the way"
    );
    pair.client.write(id, b"anyone?").unwrap();
    pair.drive();
    let mut got = Vec::new();
    assert!(read_available(&mut pair.client, id, &mut got).unwrap());
    pair.client.write(id, b"more").unwrap();
    Pair::transmit(&mut pair.client, &mut pair.to_server, usize::MAX);
    pair.server
        .handle_input(pair.now, &mut pair.to_server)
        .unwrap();
    assert_eq!(transmit_frames(&mut pair.server), []);
}

/// A held stream finished by the application is not flushed until its FIN is framed: the
/// hold ends, the FIN goes into the transmit queue, a `StreamWritable` says so, and the end
/// `poll_flushed` then gives covers the FIN.
#[test]
fn a_held_fin_is_not_reported_flushed_before_it_is_framed() {
    for version in [Version::V1, Version::V2] {
        let mut pair = Pair::v(version);
        let id = opened(&mut pair);
        pair.server.finish(id).unwrap();
        assert_eq!(
            pair.server.poll_flushed(id).unwrap(),
            None,
            "{version:?}: the FIN waits for the hold"
        );
        pair.advance(HOLD);
        assert!(pair
            .take_server_events()
            .iter()
            .any(|e| matches!(e, Event::StreamWritable { stream_id } if *stream_id == id)));
        let end = pair.server.poll_flushed(id).unwrap().expect("framed");
        assert_eq!(
            end,
            pair.server.output_offset(),
            "{version:?}: the FIN is last"
        );
        let mut got = Vec::new();
        assert!(read_available(&mut pair.client, id, &mut got).unwrap());
    }
}
