//! A peer breaking the protocol ends the session with a typed, sticky error.

use super::*;
use crate::{OpenError, ProtocolViolation};

fn feed(session: &mut Session, now: Instant, bytes: &[u8]) -> Result<(), Error> {
    let mut buf = BytesMut::from(bytes);
    session.handle_input(now, &mut buf)
}

#[test]
fn wrong_version_ends_the_session_and_stays_fatal() {
    let mut pair = Pair::new(Config::default());
    let (id, _) = pair.open_client_stream();
    let err = feed(&mut pair.server, pair.now, &[2, 0, 0, 0, 3, 0, 0, 0]).unwrap_err();
    assert!(matches!(
        err,
        Error::Protocol(ProtocolViolation::WrongVersion {
            expected: 1,
            received: 2
        })
    ));
    // Sticky: valid input, commands and timers all report the same error.
    let again = feed(&mut pair.server, pair.now, &[1, 3, 0, 0, 0, 0, 0, 0]).unwrap_err();
    assert!(matches!(
        again,
        Error::Protocol(ProtocolViolation::WrongVersion { .. })
    ));
    assert!(matches!(
        pair.server.open_stream(),
        Err(OpenError::SessionClosed(Error::Protocol(_)))
    ));
    assert!(matches!(
        pair.server.read(id, &mut [0; 1]),
        Err(ReadError::SessionClosed(_))
    ));
    pair.server
        .handle_timeout(pair.now + Duration::from_secs(1));
    assert!(matches!(pair.server.error(), Some(Error::Protocol(_))));
    assert_eq!(err.io_kind(), std::io::ErrorKind::InvalidData);
    let events: Vec<Event> = std::iter::from_fn(|| pair.server.poll_event()).collect();
    let closed = events
        .iter()
        .filter(|e| matches!(e, Event::Closed(_)))
        .count();
    assert_eq!(closed, 1, "Closed is reported once");
    assert!(
        transmit_frames(&mut pair.server).is_empty(),
        "nothing is sent after a fatal error"
    );
}

#[test]
fn unknown_command_is_fatal() {
    let mut pair = Pair::new(Config::default());
    let err = feed(&mut pair.server, pair.now, &[1, 9, 0, 0, 3, 0, 0, 0]).unwrap_err();
    assert!(matches!(
        err,
        Error::Protocol(ProtocolViolation::UnknownCommand(9))
    ));
}

#[test]
fn control_frame_with_payload_is_fatal() {
    let mut pair = Pair::new(Config::default());
    let err = feed(
        &mut pair.server,
        pair.now,
        &[1, 0, 4, 0, 3, 0, 0, 0, 1, 2, 3, 4],
    )
    .unwrap_err();
    assert!(matches!(
        err,
        Error::Protocol(ProtocolViolation::BadControlLength { len: 4, .. })
    ));
}

#[test]
fn upd_in_version_1_is_fatal() {
    let mut pair = Pair::new(Config::default());
    let err = feed(
        &mut pair.server,
        pair.now,
        &[1, 4, 8, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    )
    .unwrap_err();
    assert!(matches!(
        err,
        Error::Protocol(ProtocolViolation::UpdInVersion1 { .. })
    ));
}

#[test]
fn data_beyond_the_v2_window_is_fatal() {
    let mut pair = Pair::go_v2();
    let (id, _) = pair.open_client_stream();
    let mut input = BytesMut::new();
    for _ in 0..5 {
        Frame::Psh {
            stream_id: id,
            data: bytes::Bytes::from(vec![0u8; 60_000]),
        }
        .encode(Version::V2, &mut input)
        .unwrap();
    }
    let err = pair.server.handle_input(pair.now, &mut input).unwrap_err();
    assert!(matches!(
        err,
        Error::Protocol(ProtocolViolation::WindowExceeded {
            buffered: 300_000,
            limit: 262_144,
            ..
        })
    ));
}

#[test]
fn update_claiming_unsent_bytes_is_fatal() {
    let mut pair = Pair::v(Version::V2);
    let (id, _) = pair.open_client_stream();
    pair.client.write(id, &[0; 100]).unwrap();
    pair.drive();
    let mut input = BytesMut::new();
    Frame::Upd {
        stream_id: id,
        consumed: 101,
        window: 65_536,
    }
    .encode(Version::V2, &mut input)
    .unwrap();
    let err = pair.client.handle_input(pair.now, &mut input).unwrap_err();
    assert!(matches!(
        err,
        Error::Protocol(ProtocolViolation::ConsumedBeyondSent {
            consumed: 101,
            sent: 100,
            ..
        })
    ));
}

#[test]
fn garbage_after_valid_frames_keeps_what_came_before() {
    let mut pair = Pair::new(Config::default());
    let (id, _) = pair.open_client_stream();
    let mut input = BytesMut::new();
    Frame::Psh {
        stream_id: id,
        data: bytes::Bytes::from_static(b"good"),
    }
    .encode(Version::V1, &mut input)
    .unwrap();
    input.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 0]);
    assert!(pair.server.handle_input(pair.now, &mut input).is_err());
    let mut got = Vec::new();
    let end = read_available(&mut pair.server, id, &mut got);
    assert_eq!(got, b"good");
    assert!(matches!(
        end,
        Err(ReadError::SessionClosed(Error::Protocol(_)))
    ));
}
