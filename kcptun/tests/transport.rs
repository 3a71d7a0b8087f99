//! Our KCP transport against itself, over loopback UDP: smux on top, half-close end to end,
//! backpressure, data before a shutdown, and garbage on the wire.

use std::net::SocketAddr;
use std::time::Duration;

use smux_kcptun::tunnel::{self, Client, Options, Role};
use smux_kcptun::{KcpConfig, KcpListener, KcpStream};
use smux_tokio::{Mux, MuxConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

fn flags(role_addr: (&str, String), other: (&str, String), smuxver: u8) -> Vec<String> {
    vec![
        role_addr.0.into(),
        role_addr.1,
        other.0.into(),
        other.1,
        "--crypt".into(),
        "none".into(),
        "--datashard".into(),
        "0".into(),
        "--parityshard".into(),
        "0".into(),
        "--nocomp".into(),
        "--quiet".into(),
        "--smuxver".into(),
        smuxver.to_string(),
    ]
}

/// A target that reads to the client's FIN, then answers with how many bytes it got and
/// closes: only a tunnel that passes a half-close through gets the answer back.
async fn count_then_reply_target() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut tcp, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut got = Vec::new();
                tcp.read_to_end(&mut got).await?;
                tcp.write_all(format!("got {} bytes", got.len()).as_bytes())
                    .await?;
                tcp.shutdown().await
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_and_server_pass_a_half_close_through_both_versions() {
    let target = count_then_reply_target().await;
    for smuxver in [1u8, 2] {
        let server = Options::parse(
            Role::Server,
            flags(
                ("-l", "127.0.0.1:0".into()),
                ("-t", target.to_string()),
                smuxver,
            ),
        )
        .unwrap();
        let listener = KcpListener::bind(server.listen, server.kcp.clone())
            .await
            .unwrap();
        let udp = listener.local_addr();
        tokio::spawn(tunnel::serve(listener, server));
        let client = Options::parse(
            Role::Client,
            flags(
                ("-l", "127.0.0.1:0".into()),
                ("-r", udp.to_string()),
                smuxver,
            ),
        )
        .unwrap();
        let tcp_listener = TcpListener::bind(client.listen).await.unwrap();
        let entry = tcp_listener.local_addr().unwrap();
        tokio::spawn(Client::new(client).serve(tcp_listener));

        let mut app = TcpStream::connect(entry).await.unwrap();
        app.write_all(&vec![7u8; 300_000]).await.unwrap();
        app.shutdown().await.unwrap();
        let mut answer = String::new();
        timeout(Duration::from_secs(20), app.read_to_string(&mut answer))
            .await
            .expect("no answer after the half-close")
            .unwrap();
        assert_eq!(answer, "got 300000 bytes", "smux version {smuxver}");
    }
}

/// A KCP session pair on loopback: (client side, server side).
async fn pair(config: KcpConfig) -> (KcpStream, KcpStream) {
    let mut listener = KcpListener::bind("127.0.0.1:0".parse().unwrap(), config.clone())
        .await
        .unwrap();
    let mut client = KcpStream::connect(listener.local_addr(), &config)
        .await
        .unwrap();
    // KCP has no handshake: the first bytes open the session on the server.
    client.write_all(b"x").await.unwrap();
    let (mut server, _) = listener.accept().await.unwrap();
    let mut x = [0u8; 1];
    server.read_exact(&mut x).await.unwrap();
    assert_eq!(client.conv(), server.conv());
    tokio::spawn(async move {
        // Keep the listener (and so the server session's input) alive.
        let _ = listener.accept().await;
    });
    (client, server)
}

#[tokio::test]
async fn a_writer_whose_peer_does_not_read_is_held_back_not_buffered() {
    let config = KcpConfig {
        snd_wnd: 32,
        rcv_wnd: 128,
        ..KcpConfig::client()
    };
    let (mut client, _server) = pair(config).await;
    // The server never reads: its receive window fills, then our send window.
    let chunk = vec![1u8; 64 * 1024];
    let mut written = 0usize;
    let r = timeout(Duration::from_secs(3), async {
        loop {
            client.write_all(&chunk).await.unwrap();
            written += chunk.len();
        }
    })
    .await;
    assert!(r.is_err(), "writes never blocked");
    // At most the peer's window (128 segments) plus our send window (32) are out of our
    // hands; the rest of a 1350-byte-MTU stream is waiting in the writer.
    let mss = 1350 - 20 - 24;
    assert!(
        written <= (128 + 32 + 64) * mss + chunk.len(),
        "{written} bytes accepted"
    );
    assert!(client.unacknowledged() <= 32 + 64);
}

#[tokio::test]
async fn bytes_written_before_shutdown_all_arrive() {
    let (mut client, mut server) = pair(KcpConfig::client()).await;
    let data: Vec<u8> = (0..2_000_000u32).map(|i| (i % 251) as u8).collect();
    let sent = data.clone();
    let writer = tokio::spawn(async move {
        client.write_all(&sent).await.unwrap();
        client.shutdown().await.unwrap();
        // Everything is acknowledged once shutdown returns.
        assert_eq!(client.unacknowledged(), 0);
        drop(client);
    });
    let mut got = vec![0u8; data.len()];
    timeout(Duration::from_secs(30), server.read_exact(&mut got))
        .await
        .unwrap()
        .unwrap();
    writer.await.unwrap();
    assert!(got == data);
}

#[tokio::test]
async fn garbage_datagrams_are_dropped_and_the_session_goes_on() {
    let config = KcpConfig::client();
    let (client, server) = pair(config).await;
    let server_addr = client.peer_addr();
    let mux_client = Mux::client(client, MuxConfig::default()).unwrap();
    let mux_server = Mux::server(server, MuxConfig::default()).unwrap();
    tokio::spawn({
        let m = mux_server.clone();
        async move {
            while let Ok(mut s) = m.accept().await {
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = s.shutdown().await;
                });
            }
        }
    });
    // Datagrams of every length and content, from a stranger, to the server's port; and
    // well-formed headers with wild sequence numbers from the same stranger.
    let stranger = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut seed = 99u64;
    for len in 0..600usize {
        let mut d = vec![0u8; len];
        for b in &mut d {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            *b = (seed >> 35) as u8;
        }
        if len >= 44 {
            // A valid header and CRC around random segments.
            let crc = crc32(&d[20..]);
            d[16..20].copy_from_slice(&crc.to_le_bytes());
        }
        stranger.send_to(&d, server_addr).await.unwrap();
    }
    let mut s = mux_client.connect().await.unwrap();
    s.write_all(b"still here").await.unwrap();
    let mut buf = [0u8; 10];
    timeout(Duration::from_secs(10), s.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf, b"still here");
}

fn crc32(b: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &x in b {
        crc ^= u32::from(x);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
