//! `limit_unsent` (TCP_NOTSENT_LOWAT) on tokio's `TcpStream`: the option is set (read back
//! through socket2 on Linux; `Unsupported` elsewhere), and a mux over sockets with a small
//! unsent queue still carries bulk and small echoes intact, in protocol versions 1 and 2.
#![cfg(unix)]

use std::io;
use std::time::Duration;

use smux_test_support::{checksum, payload};
use smux_tokio::{limit_unsent, Mux, MuxConfig, Version, RECOMMENDED_UNSENT_LIMIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Longest a scenario may take before it counts as hung.
const HANG: Duration = Duration::from_secs(60);

/// Bytes of the bulk echo: many times the limit, so writes to the socket stop short often.
const BULK: usize = 4 << 20;

/// Two ends of a fresh loopback TCP connection: (connecting side, accepting side).
async fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
    (client.unwrap(), accepted.unwrap().0)
}

/// Sets the recommended limit on `tcp` and checks that it took (Linux, Android) or that the
/// platform says it cannot (elsewhere).
fn limit_and_check(tcp: &TcpStream) {
    let set = limit_unsent(tcp, RECOMMENDED_UNSENT_LIMIT);
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        set.unwrap();
        let got = socket2::SockRef::from(tcp).tcp_notsent_lowat().unwrap();
        assert_eq!(got, RECOMMENDED_UNSENT_LIMIT);
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    assert_eq!(set.unwrap_err().kind(), io::ErrorKind::Unsupported);
}

#[tokio::test]
async fn the_limit_is_set_on_both_ends() {
    let (client, server) = tcp_pair().await;
    limit_and_check(&client);
    limit_and_check(&server);
}

/// Every stream the server accepts is echoed back, then finished.
async fn echo_server(mux: Mux<TcpStream>) {
    while let Ok(stream) = mux.accept().await {
        tokio::spawn(async move {
            let (mut reader, mut writer) = stream.into_split();
            tokio::io::copy(&mut reader, &mut writer).await?;
            writer.shutdown().await
        });
    }
}

/// One stream echoes `BULK` bytes (written and read at once) while 50 small streams, one
/// after another, each get their 100 bytes back.
async fn echo_over_limited_sockets(version: Version) -> io::Result<()> {
    let (a, b) = tcp_pair().await;
    limit_and_check(&a);
    limit_and_check(&b);
    let config = MuxConfig::default().with_version(version);
    let client = Mux::client(a, config.clone()).unwrap();
    let server = Mux::server(b, config).unwrap();
    tokio::spawn(echo_server(server));

    let bulk = {
        let (mut reader, mut writer) = client.connect().await?.into_split();
        let sent = payload(1, BULK);
        let expected = checksum(&sent);
        let write = tokio::spawn(async move {
            writer.write_all(&sent).await?;
            writer.shutdown().await
        });
        tokio::spawn(async move {
            let mut echoed = Vec::with_capacity(BULK);
            reader.read_to_end(&mut echoed).await?;
            write.await.unwrap()?;
            assert_eq!(echoed.len(), BULK);
            assert_eq!(checksum(&echoed), expected, "bulk echo");
            io::Result::Ok(())
        })
    };

    for i in 0..50u64 {
        let mut s = client.connect().await?;
        let msg = payload(100 + i, 100);
        s.write_all(&msg).await?;
        s.shutdown().await?;
        let mut echoed = Vec::new();
        s.read_to_end(&mut echoed).await?;
        assert_eq!(echoed, msg, "small echo {i}");
    }
    bulk.await.unwrap()?;
    client.close().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mux_over_limited_sockets_echoes_v1() {
    tokio::time::timeout(HANG, echo_over_limited_sockets(Version::V1))
        .await
        .expect("hung")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mux_over_limited_sockets_echoes_v2() {
    tokio::time::timeout(HANG, echo_over_limited_sockets(Version::V2))
        .await
        .expect("hung")
        .unwrap();
}

#[tokio::test]
async fn a_mux_over_limited_sockets_echoes_on_one_thread() {
    tokio::time::timeout(HANG, echo_over_limited_sockets(Version::V1))
        .await
        .expect("hung")
        .unwrap();
}
