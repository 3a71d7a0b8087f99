//! Keepalive: NOPs every interval, timeout after silence, driven only by the clock passed in.

use super::*;

#[test]
fn nop_is_sent_every_interval() {
    let mut pair = Pair::new(Config::default());
    assert_eq!(
        pair.client.poll_timeout(),
        Some(pair.now + Duration::from_secs(10))
    );
    pair.now += Duration::from_secs(10);
    pair.client.handle_timeout(pair.now);
    assert_eq!(
        transmit_frames(&mut pair.client),
        vec![Frame::Nop {
            stream_id: StreamId::new(0)
        }]
    );
    // With nothing else going on, each side receives exactly one NOP per interval.
    for _ in 0..6 {
        pair.advance(Duration::from_secs(10));
    }
    assert_eq!(pair.server.stats().frames_in, 6);
    assert_eq!(pair.client.stats().frames_in, 6);
    assert!(pair.client.error().is_none() && pair.server.error().is_none());
}

#[test]
fn silent_peer_times_out() {
    let mut pair = Pair::new(Config::default());
    // The server hears nothing: advance its clock only.
    pair.server
        .handle_timeout(pair.now + Duration::from_secs(29));
    assert!(pair.server.error().is_none());
    pair.server
        .handle_timeout(pair.now + Duration::from_secs(30));
    assert!(
        matches!(pair.server.error(), Some(Error::KeepAliveTimeout(d)) if *d == Duration::from_secs(30))
    );
    let events: Vec<Event> = std::iter::from_fn(|| pair.server.poll_event()).collect();
    assert!(matches!(
        closed_error(&events),
        Some(Error::KeepAliveTimeout(_))
    ));
    assert_eq!(pair.server.poll_timeout(), None);
}

#[test]
fn keepalives_keep_an_idle_pair_alive() {
    let mut pair = Pair::new(Config::default());
    for _ in 0..30 {
        pair.advance(Duration::from_secs(5));
    }
    assert!(pair.client.error().is_none());
    assert!(pair.server.error().is_none());
}

#[test]
fn deadline_follows_the_last_frame_received() {
    let mut pair = Pair::new(Config {
        keep_alive_interval: Duration::from_secs(100), // no NOPs in this test
        keep_alive_timeout: Duration::from_secs(100),
        ..Config::default()
    });
    let (id, _) = pair.open_client_stream();
    pair.now += Duration::from_secs(60);
    pair.client.write(id, b"alive").unwrap();
    pair.drive(); // the server receives at t=60
    pair.server
        .handle_timeout(pair.now + Duration::from_secs(99));
    assert!(pair.server.error().is_none());
    pair.server
        .handle_timeout(pair.now + Duration::from_secs(100));
    assert!(matches!(
        pair.server.error(),
        Some(Error::KeepAliveTimeout(_))
    ));
}

#[test]
fn disabled_keepalive_never_times_out() {
    let mut pair = Pair::new(Config {
        keep_alive_disabled: true,
        ..Config::default()
    });
    assert_eq!(pair.client.poll_timeout(), None);
    pair.client
        .handle_timeout(pair.now + Duration::from_secs(3600));
    assert!(pair.client.error().is_none());
    assert!(transmit_frames(&mut pair.client).is_empty(), "no NOP");
}

#[test]
fn paused_input_does_not_time_out() {
    let mut pair = Pair::new(Config {
        max_receive_buffer: 10_000,
        max_stream_buffer: 10_000,
        ..Config::default()
    });
    let (id, _) = pair.open_client_stream();
    pair.client.write(id, &[1; 50_000]).unwrap();
    pair.drive();
    assert!(!pair.server.wants_read());
    // The server's application does not read for a long time; the peer is not to blame.
    pair.server
        .handle_timeout(pair.now + Duration::from_secs(120));
    assert!(pair.server.error().is_none());
    let mut got = Vec::new();
    read_available(&mut pair.server, id, &mut got).unwrap();
    // After resuming, the timeout counts from the moment the pause was seen to end.
    pair.server
        .handle_timeout(pair.now + Duration::from_secs(121));
    assert!(pair.server.error().is_none());
}
