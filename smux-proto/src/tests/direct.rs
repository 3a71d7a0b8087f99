//! Zero-copy direct writes: whatever part of a direct write the transport takes, the peer
//! receives every byte in order, interleaved correctly with the other streams' frames.

use super::*;
use crate::WriteError;

/// Writes `data` on `id` with direct writes where possible (the transport "taking" the
/// amounts in `takes`, in turn) and plain writes otherwise, while another stream writes
/// alongside; checks both arrive intact.
fn direct_writes_arrive_intact(version: Version, takes: &[usize]) {
    let mut pair = Pair::v(version);
    let (a, _) = pair.open_client_stream();
    let (b, _) = pair.open_client_stream();
    let data_a = pattern(1, 700_000);
    let data_b = pattern(2, 150_000);
    let (mut left_a, mut left_b) = (&data_a[..], &data_b[..]);
    let (mut got_a, mut got_b) = (Vec::new(), Vec::new());
    let mut takes = takes.iter().cycle();
    let mut direct_bytes = 0;
    let mut rounds = 0;
    while got_a.len() < data_a.len() || got_b.len() < data_b.len() {
        rounds += 1;
        assert!(rounds < 100_000, "no progress");
        if !left_a.is_empty() {
            match pair.client.begin_direct_write(a, left_a).unwrap() {
                Some(write) => {
                    let take = (*takes.next().unwrap()).min(write.wire_len());
                    let mut slices = [std::io::IoSlice::new(&[]); 2 * crate::DIRECT_FRAMES];
                    let n = write.slices(&mut slices);
                    let mut budget = take;
                    for slice in &slices[..n] {
                        let k = slice.len().min(budget);
                        pair.to_server.extend_from_slice(&slice[..k]);
                        budget -= k;
                    }
                    let accepted = pair.client.end_direct_write(write, take);
                    direct_bytes += accepted;
                    left_a = &left_a[accepted..];
                }
                None => match pair.client.write(a, left_a) {
                    Ok(n) => left_a = &left_a[n..],
                    Err(WriteError::Blocked) => {}
                    Err(e) => panic!("{e}"),
                },
            }
        }
        if !left_b.is_empty() && rounds % 3 == 0 {
            if let Ok(n) = pair.client.write(b, &left_b[..left_b.len().min(5000)]) {
                left_b = &left_b[n..];
            }
        }
        pair.drive();
        read_available(&mut pair.server, a, &mut got_a).unwrap();
        read_available(&mut pair.server, b, &mut got_b).unwrap();
    }
    assert_eq!(checksum(&got_a), checksum(&data_a));
    assert_eq!(got_a, data_a);
    assert_eq!(got_b, data_b);
    assert!(direct_bytes > 0, "some writes went the direct way");
    assert_eq!(pair.client.stats().bytes_out, pair.server.stats().bytes_in);
}

#[test]
fn direct_writes_survive_any_partial_write_v1() {
    direct_writes_arrive_intact(
        Version::V1,
        &[0, 3, 8, 9, 100, 5000, 32776, 40000, usize::MAX],
    );
}

#[test]
fn direct_writes_survive_any_partial_write_v2() {
    direct_writes_arrive_intact(Version::V2, &[usize::MAX, 1, 7, 8, 33000, 0, 65552, 12345]);
}

const ZEROS: [u8; 100] = [0; 100];

#[test]
fn no_direct_write_while_anything_else_waits_or_the_stream_cannot_write() {
    let mut pair = Pair::v(Version::V1);
    let (a, _) = pair.open_client_stream();
    let (b, _) = pair.open_client_stream();
    // Another stream's data waits: a direct write would jump the queue.
    pair.client.write(b, b"queued").unwrap();
    assert!(pair.client.begin_direct_write(a, &ZEROS).unwrap().is_none());
    pair.drive();
    // The stream's own data waits.
    pair.client.write(a, b"mine").unwrap();
    assert!(pair.client.begin_direct_write(a, &ZEROS).unwrap().is_none());
    pair.drive();
    // Free to go; a finished stream reports the error `write` would.
    let write = pair.client.begin_direct_write(a, &ZEROS).unwrap().unwrap();
    assert_eq!(write.len(), 100);
    assert_eq!(pair.client.end_direct_write(write, 0), 0);
    pair.client.finish(a).unwrap();
    assert!(matches!(
        pair.client.begin_direct_write(a, &ZEROS),
        Err(WriteError::Finished(_))
    ));
}

#[test]
fn a_direct_write_in_flight_holds_back_all_other_output() {
    let mut pair = Pair::v(Version::V1);
    let (a, _) = pair.open_client_stream();
    let (b, _) = pair.open_client_stream();
    let data = pattern(3, 1000);
    let write = pair.client.begin_direct_write(a, &data).unwrap().unwrap();
    // Output made while the direct write is in flight (a plain write on another stream, a
    // FIN) waits behind it, and a second direct write cannot begin.
    pair.client.write(b, b"after").unwrap();
    pair.client.finish(b).unwrap();
    assert!(!pair.client.wants_write());
    let mut out = BytesMut::new();
    assert_eq!(pair.client.transmit_into(&mut out), 0);
    let mut chunks = std::collections::VecDeque::new();
    assert_eq!(pair.client.poll_transmit_chunks(&mut chunks), 0);
    assert!(pair.client.begin_direct_write(a, &data).unwrap().is_none());
    // The transport takes half of the direct write's bytes: the rest of that frame, then the
    // held-back output, follow in order.
    let mut slices = [std::io::IoSlice::new(&[]); 2 * crate::DIRECT_FRAMES];
    let n = write.slices(&mut slices);
    let wire: Vec<u8> = slices[..n].iter().flat_map(|s| s.iter().copied()).collect();
    pair.to_server.extend_from_slice(&wire[..500]);
    assert_eq!(pair.client.end_direct_write(write, 500), 1000);
    assert!(pair.client.wants_write());
    pair.drive();
    let (mut got_a, mut got_b) = (Vec::new(), Vec::new());
    read_available(&mut pair.server, a, &mut got_a).unwrap();
    read_available(&mut pair.server, b, &mut got_b).unwrap();
    assert_eq!(got_a, data);
    assert_eq!(got_b, b"after");
}
