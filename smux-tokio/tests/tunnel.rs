//! The port-forwarding example (`examples/port_forward.rs`) as a test: many TCP connections
//! through one smux connection at once, to a TCP echo target, each byte checked; versions 1
//! and 2, with connections that send nothing, a little, or megabytes.

#[allow(dead_code)]
#[path = "../examples/port_forward.rs"]
mod port_forward;

use std::time::Duration;

use smux_test_support::{checksum, payload, XorShift};
use smux_tokio::{MuxConfig, Version};

async fn many_connections_through_one_tunnel(version: Version) {
    let entry = port_forward::start_tunnel_to_echo(MuxConfig::default().with_version(version))
        .await
        .unwrap();
    let mut rng = XorShift::new(version.as_u8().into());
    let apps: Vec<_> = (0..200u64)
        .map(|i| {
            let len = match i % 4 {
                0 => 0,
                1 => rng.range(1, 100),
                2 => rng.range(100, 20_000),
                _ => rng.range(20_000, 1_500_000),
            };
            tokio::spawn(async move {
                let data = payload(i, len);
                let echo = port_forward::app(entry, data.clone()).await.unwrap();
                assert_eq!(echo.len(), data.len(), "app {i}");
                assert_eq!(checksum(&echo), checksum(&data), "app {i}");
            })
        })
        .collect();
    tokio::time::timeout(Duration::from_secs(120), futures::future::join_all(apps))
        .await
        .expect("the tunnel stalled")
        .into_iter()
        .for_each(|r| r.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_connections_through_one_tunnel_v1() {
    many_connections_through_one_tunnel(Version::V1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_connections_through_one_tunnel_v2() {
    many_connections_through_one_tunnel(Version::V2).await;
}
