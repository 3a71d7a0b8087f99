//! Frame codec micro-benchmarks.
#![allow(missing_docs)]

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use smux_proto::{Frame, FrameDecoder, StreamId, Version};

fn codec(c: &mut Criterion) {
    let frame = Frame::Psh {
        stream_id: StreamId::new(3),
        data: Bytes::from(vec![7u8; 32 * 1024]),
    };
    let mut wire = Vec::new();
    for _ in 0..64 {
        frame.encode(Version::V1, &mut wire).unwrap();
    }
    let mut group = c.benchmark_group("codec");
    group.throughput(Throughput::Bytes(wire.len() as u64));
    group.bench_function("decode 64 x 32 KiB PSH", |b| {
        let decoder = FrameDecoder::new(Version::V1);
        b.iter(|| {
            let mut buf = BytesMut::from(&wire[..]);
            let mut n = 0;
            while let Some(f) = decoder.decode(&mut buf).unwrap() {
                n += f.encoded_len();
            }
            n
        })
    });
    group.bench_function("encode 64 x 32 KiB PSH", |b| {
        let mut out = Vec::with_capacity(wire.len());
        b.iter(|| {
            out.clear();
            for _ in 0..64 {
                frame.encode(Version::V1, &mut out).unwrap();
            }
            out.len()
        })
    });
    group.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
