//! In-memory session pair throughput: a client and a server `smux_proto::Session` pumped
//! against each other with no sockets, at 1, 16 and 256 concurrent streams.
#![allow(missing_docs)]
// The benchmark is the driver: it reads the clock and hands the time to the core.
#![allow(clippy::disallowed_methods)]

use std::time::Instant;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use smux_proto::{Config, Event, ReadError, Session, Side, StreamId, Version, WriteError};

const TOTAL: usize = 32 * 1024 * 1024;

/// Moves `TOTAL` bytes from client to server spread over `streams` streams; returns the bytes
/// the server read.
fn run(version: Version, streams: usize, chunk: &Bytes) -> usize {
    let now = Instant::now();
    let config = Config::default()
        .with_version(version)
        .with_keep_alive_disabled(true);
    let mut client = Session::new(Side::Client, config.clone(), now).unwrap();
    let mut server = Session::new(Side::Server, config, now).unwrap();
    let (mut up, mut down) = (BytesMut::new(), BytesMut::new());
    let ids: Vec<StreamId> = (0..streams)
        .map(|_| client.open_stream().unwrap())
        .collect();
    let per_stream = TOTAL / streams;
    let mut sent = vec![0usize; streams];
    let mut accepted = Vec::new();
    let mut received = 0;
    let mut buf = vec![0u8; 64 * 1024];
    while received < per_stream * streams {
        for (i, &id) in ids.iter().enumerate() {
            while sent[i] < per_stream {
                let piece = chunk.slice(..chunk.len().min(per_stream - sent[i]));
                match client.write_chunk(id, &piece) {
                    Ok(n) => sent[i] += n,
                    Err(WriteError::Blocked) => break,
                    Err(e) => panic!("{e}"),
                }
            }
        }
        client.transmit_into(&mut up);
        server.transmit_into(&mut down);
        server.handle_input(now, &mut up).unwrap();
        client.handle_input(now, &mut down).unwrap();
        while let Some(event) = server.poll_event() {
            if let Event::StreamOpened { .. } = event {
                accepted.push(server.accept_stream().unwrap());
            }
        }
        while client.poll_event().is_some() {}
        for &id in &accepted {
            loop {
                match server.read(id, &mut buf) {
                    Ok(n) if n > 0 => received += n,
                    Ok(_) | Err(ReadError::Blocked) => break,
                    Err(e) => panic!("{e}"),
                }
            }
        }
    }
    received
}

fn session_pair(c: &mut Criterion) {
    let chunk = Bytes::from(vec![0x5au8; 64 * 1024]);
    let mut group = c.benchmark_group("session_pair");
    group.throughput(Throughput::Bytes(TOTAL as u64));
    group.sample_size(10);
    for version in [Version::V1, Version::V2] {
        for streams in [1usize, 16, 256] {
            group.bench_with_input(
                BenchmarkId::new(format!("{version:?}"), streams),
                &streams,
                |b, &streams| b.iter(|| run(version, streams, &chunk)),
            );
        }
    }
    group.finish();
}

criterion_group!(benches, session_pair);
criterion_main!(benches);
