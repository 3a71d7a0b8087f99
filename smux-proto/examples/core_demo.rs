//! Two in-memory sessions, a client and a server, exchanging data with no sockets: the
//! sans-IO core driven by a twenty-line loop. Prints what happened and the throughput seen.
//!
//! Run: `cargo run --release -p smux-proto --example core_demo`

// This program is the driver, so it reads the clock and hands the time to the core.
#![allow(clippy::disallowed_methods)]

use std::time::Instant;

use bytes::BytesMut;
use smux_proto::{Config, Event, ReadError, Session, Side, StreamId, Version, WriteError};

const STREAMS: usize = 8;
const BYTES_PER_STREAM: usize = 16 * 1024 * 1024;

/// Checks that `data`, found at `offset` in a stream, is the repeating `payload` pattern.
fn matches_pattern(payload: &[u8], mut offset: usize, mut data: &[u8]) -> bool {
    while !data.is_empty() {
        let start = offset % payload.len();
        let k = data.len().min(payload.len() - start);
        if data[..k] != payload[start..start + k] {
            return false;
        }
        data = &data[k..];
        offset += k;
    }
    true
}

fn run(version: Version) {
    let start = Instant::now();
    let config = Config::default().with_version(version);
    let mut client = Session::new(Side::Client, config.clone(), start).unwrap();
    let mut server = Session::new(Side::Server, config, start).unwrap();
    let (mut to_server, mut to_client) = (BytesMut::new(), BytesMut::new());

    // The client opens streams and uploads a repeating pattern; the server checks every byte.
    let ids: Vec<StreamId> = (0..STREAMS)
        .map(|_| client.open_stream().unwrap())
        .collect();
    let payload: Vec<u8> = (0..64 * 1024 + 13).map(|i| (i * 7 % 251) as u8).collect();
    let mut sent = [0usize; STREAMS];
    let mut received: Vec<(StreamId, usize)> = Vec::new();
    let mut open: Vec<(StreamId, usize)> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];

    while received.len() < STREAMS {
        // Client: write as much as the session takes, finish streams that are done.
        for (i, &id) in ids.iter().enumerate() {
            while sent[i] < BYTES_PER_STREAM {
                let start = sent[i] % payload.len();
                let len = (payload.len() - start).min(BYTES_PER_STREAM - sent[i]);
                match client.write(id, &payload[start..start + len]) {
                    Ok(n) => {
                        sent[i] += n;
                        if sent[i] == BYTES_PER_STREAM {
                            client.finish(id).unwrap();
                        }
                    }
                    Err(WriteError::Blocked) => break,
                    Err(e) => panic!("write: {e}"),
                }
            }
        }
        // The "network": both directions, then input handling.
        client.transmit_into(&mut to_server);
        server.transmit_into(&mut to_client);
        let now = Instant::now();
        server.handle_input(now, &mut to_server).unwrap();
        client.handle_input(now, &mut to_client).unwrap();
        // Server: accept new streams and read everything available.
        while let Some(event) = server.poll_event() {
            if let Event::StreamOpened { .. } = event {
                let id = server.accept_stream().unwrap();
                open.push((id, 0));
            }
        }
        open.retain_mut(|(id, len)| loop {
            match server.read(*id, &mut buf) {
                Ok(0) => {
                    received.push((*id, *len));
                    server.release_stream(*id);
                    return false;
                }
                Ok(n) => {
                    assert!(
                        matches_pattern(&payload, *len, &buf[..n]),
                        "stream {id} corrupted"
                    );
                    *len += n;
                }
                Err(ReadError::Blocked) => return true,
                Err(e) => panic!("read: {e}"),
            }
        });
        while client.poll_event().is_some() {}
    }
    let elapsed = start.elapsed();

    received.sort_by_key(|r| r.0);
    for (i, (id, len)) in received.iter().enumerate() {
        assert_eq!(*len, sent[i], "stream {id} lost data");
    }
    let total = STREAMS * BYTES_PER_STREAM;
    let (c, s) = (client.stats(), server.stats());
    println!("protocol {version:?}:");
    println!(
        "  client opened {} streams (ids {}..={}), server accepted {}",
        c.streams_opened,
        ids[0],
        ids[STREAMS - 1],
        s.streams_accepted
    );
    println!(
        "  {} MiB sent in {} frames ({} bytes on the wire), every byte checked on arrival",
        total >> 20,
        c.frames_out,
        c.bytes_out
    );
    println!(
        "  server answered with {} frames (UPD window updates in v2, none in v1)",
        s.frames_out
    );
    println!(
        "  {:.2} GiB/s through the two in-memory sessions ({:.0} ms)",
        total as f64 / elapsed.as_secs_f64() / f64::from(1 << 30),
        elapsed.as_secs_f64() * 1000.0
    );
}

fn main() {
    println!("smux-proto demo: a client and a server session in one process, no sockets.");
    run(Version::V1);
    run(Version::V2);
}
