//! Draining: a session that stops taking new streams, lets the open ones finish, and closes
//! when they are done or at its deadline.

use super::*;
use crate::OpenError;

/// Opens a stream on the client, writes `data` on it, and lets the server accept it.
fn open_with(pair: &mut Pair, data: &[u8]) -> StreamId {
    let (id, _) = pair.open_client_stream();
    write_all(pair, Side::Client, id, data);
    pair.drive();
    id
}

fn drain_refuses_new_streams_and_closes_after_the_last_one(version: Version) {
    let mut pair = Pair::v(version);
    let a = open_with(&mut pair, b"before");
    pair.server.drain(None);
    assert!(pair.server.is_draining() && !pair.server.is_closing());
    assert!(pair.server.snapshot().draining);
    assert!(matches!(
        pair.server.open_stream(),
        Err(OpenError::Draining)
    ));

    // A stream the peer opens during the drain is refused: it reads its end at once.
    let b = pair.client.open_stream().unwrap();
    pair.client.write(b, b"ignored").unwrap();
    pair.drive();
    assert_eq!(pair.server.accept_stream(), None);
    assert_eq!(pair.server.stats().streams_refused, 1);
    let mut got = Vec::new();
    assert!(read_available(&mut pair.client, b, &mut got).unwrap());
    assert!(got.is_empty());
    pair.client.release_stream(b);

    // The stream open before the drain works both ways.
    let mut got = Vec::new();
    read_available(&mut pair.server, a, &mut got).unwrap();
    assert_eq!(got, b"before");
    write_all(&mut pair, Side::Server, a, b"reply");
    write_all(&mut pair, Side::Client, a, b" more");
    pair.drive();
    got.clear();
    read_available(&mut pair.server, a, &mut got).unwrap();
    assert_eq!(got, b" more");
    assert!(!pair.server.is_closing(), "a stream is still open");

    // The server is done with it: it closes once the stream's FIN is framed.
    pair.server.release_stream(a);
    pair.drive();
    assert!(pair.server.is_closed());
    assert!(matches!(
        closed_error(&pair.take_server_events()),
        Some(Error::LocallyClosed)
    ));
    // Everything the server wrote reached the client, then the stream's end.
    let mut reply = Vec::new();
    assert!(read_available(&mut pair.client, a, &mut reply).unwrap());
    assert_eq!(reply, b"reply");
}

#[test]
fn drain_refuses_new_streams_and_closes_after_the_last_one_v1() {
    drain_refuses_new_streams_and_closes_after_the_last_one(Version::V1);
}

#[test]
fn drain_refuses_new_streams_and_closes_after_the_last_one_v2() {
    drain_refuses_new_streams_and_closes_after_the_last_one(Version::V2);
}

#[test]
fn streams_waiting_in_the_backlog_can_still_be_accepted_during_a_drain() {
    let mut pair = Pair::new(Config::default());
    let id = pair.client.open_stream().unwrap();
    pair.client.write(id, b"queued").unwrap();
    pair.drive();
    pair.server.drain(None);
    assert_eq!(pair.server.accept_stream(), Some(id));
    let mut got = Vec::new();
    read_available(&mut pair.server, id, &mut got).unwrap();
    assert_eq!(got, b"queued");
}

#[test]
fn a_drain_with_no_streams_closes_at_once() {
    let mut pair = Pair::new(Config::default());
    pair.server.drain(Some(pair.now + Duration::from_secs(60)));
    pair.drive();
    assert!(pair.server.is_closed());
}

#[test]
fn at_the_deadline_the_streams_left_are_finished_after_their_data() {
    let mut pair = Pair::v(Version::V2);
    let a = open_with(&mut pair, b"x");
    let deadline = pair.now + Duration::from_secs(5);
    pair.server.drain(Some(deadline));
    assert!(pair.server.poll_timeout().unwrap() <= deadline);
    write_all(&mut pair, Side::Server, a, b"last words");
    pair.advance(Duration::from_secs(4));
    assert!(!pair.server.is_closing(), "closed before the deadline");
    pair.advance(Duration::from_secs(1));
    assert!(pair.server.is_closing(), "still open at the deadline");
    pair.drive();
    let mut got = Vec::new();
    assert!(read_available(&mut pair.client, a, &mut got).unwrap());
    assert_eq!(got, b"last words");
}

/// Why a stream is refused, for [`a_lost_refusal_goes_again`].
#[derive(Clone, Copy, Debug)]
enum Refusal {
    Draining,
    StreamLimit,
}

/// Go's smux registers a stream it opens only after its SYN is written, and drops a FIN for a
/// stream it does not know, so the FIN of a quick refusal can be lost. Here both first FINs
/// are lost on the way. The stream the peer writes on gets its FIN again on the peer's first
/// data; the one the peer only reads from, after `REPEAT_AFTER`; neither ever a third time.
fn a_lost_refusal_goes_again(version: Version, why: Refusal) {
    let limit = match why {
        Refusal::Draining => Config::default().max_streams,
        Refusal::StreamLimit => 1,
    };
    let config = Config::default().with_version(version);
    let mut pair = Pair::with_configs(config.clone(), config.with_max_streams(limit));
    let held = open_with(&mut pair, b"held");
    if let Refusal::Draining = why {
        pair.server.drain(None);
    }
    let writer = pair.client.open_stream().unwrap();
    let reader = pair.client.open_stream().unwrap();
    Pair::transmit(&mut pair.client, &mut pair.to_server, usize::MAX);
    pair.server
        .handle_input(pair.now, &mut pair.to_server)
        .unwrap();
    let lost = transmit_frames(&mut pair.server);
    assert_eq!(pair.server.stats().streams_refused, 2);
    let mut got = Vec::new();
    if version == Version::V2 {
        // A version 2 client narrows the initial window of a stream it opens beside a busy
        // one with an UPD right after the SYN: that UPD tells the server the client has
        // registered the stream, so the FIN goes again at once, and that one is not lost.
        assert_eq!(
            lost,
            [writer, writer, reader, reader].map(|stream_id| Frame::Fin { stream_id }),
            "{why:?}: each FIN, and again for the UPD after its SYN"
        );
        for id in [writer, reader] {
            Frame::Fin { stream_id: id }
                .encode(version, &mut pair.to_client)
                .unwrap();
        }
        pair.drive();
        for id in [writer, reader] {
            assert!(read_available(&mut pair.client, id, &mut got).unwrap());
        }
        assert!(got.is_empty());
    } else {
        assert_eq!(
            lost,
            [writer, reader].map(|stream_id| Frame::Fin { stream_id }),
            "{why:?}: the first FINs, lost on the way"
        );

        // The peer writes on one stream: the FIN comes again, the peer reads its end.
        write_all(&mut pair, Side::Client, writer, b"request");
        pair.drive();
        assert!(read_available(&mut pair.client, writer, &mut got).unwrap());
        assert!(got.is_empty());
        assert!(!read_available(&mut pair.client, reader, &mut got).unwrap());

        // The other one only waits: its FIN comes again after a while.
        let repeat = crate::early_fins::REPEAT_AFTER;
        pair.advance(repeat - Duration::from_millis(1));
        assert!(!read_available(&mut pair.client, reader, &mut got).unwrap());
        pair.advance(Duration::from_millis(1));
        assert!(read_available(&mut pair.client, reader, &mut got).unwrap());
        assert!(got.is_empty());
    }
    let repeat = crate::early_fins::REPEAT_AFTER;

    // Not a third time, whatever the peer sends or however long it waits.
    for id in [writer, reader] {
        pair.client.write(id, b"more").unwrap();
    }
    Pair::transmit(&mut pair.client, &mut pair.to_server, usize::MAX);
    pair.server
        .handle_input(pair.now, &mut pair.to_server)
        .unwrap();
    pair.now += 10 * repeat;
    pair.server.handle_timeout(pair.now);
    let later = transmit_frames(&mut pair.server);
    assert!(
        later.iter().all(|f| matches!(f, Frame::Nop { .. })),
        "{why:?}: {later:?}"
    );
    assert_eq!(pair.server.stats().streams_refused, 2);
    assert!(!pair.server.is_closing(), "{held:?} is still open");
}

#[test]
fn a_lost_refusal_goes_again_v1() {
    a_lost_refusal_goes_again(Version::V1, Refusal::Draining);
    a_lost_refusal_goes_again(Version::V1, Refusal::StreamLimit);
}

#[test]
fn a_lost_refusal_goes_again_v2() {
    a_lost_refusal_goes_again(Version::V2, Refusal::Draining);
    a_lost_refusal_goes_again(Version::V2, Refusal::StreamLimit);
}
