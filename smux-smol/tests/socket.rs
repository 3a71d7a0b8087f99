//! `limit_unsent` (TCP_NOTSENT_LOWAT) on smol's sockets (`smol::net::TcpStream` and
//! `Async<std::net::TcpStream>`): the option is set (read back through socket2 on Linux;
//! `Unsupported` elsewhere), and a mux over sockets with a small unsent queue still carries
//! bulk and small echoes intact, in protocol versions 1 and 2.
#![cfg(unix)]

use std::future::Future;
use std::io;
use std::os::fd::AsFd;
use std::time::Duration;

use futures::io::{AsyncReadExt, AsyncWriteExt};
use smol::future::FutureExt as _;
use smol::net::{TcpListener, TcpStream};
use smol::{Async, Timer};
use smux_smol::{limit_unsent, Mux, MuxConfig, Version, RECOMMENDED_UNSENT_LIMIT};
use smux_test_support::{checksum, payload};

/// Longest a scenario may take before it counts as hung.
const HANG: Duration = Duration::from_secs(60);

/// Bytes of the bulk echo: many times the limit, so writes to the socket stop short often.
const BULK: usize = 4 << 20;

/// Runs a test body on smol, failing it if it takes longer than [`HANG`].
fn run(body: impl Future<Output = io::Result<()>>) {
    smol::block_on(body.or(async {
        Timer::after(HANG).await;
        panic!("timed out after {HANG:?}");
    }))
    .unwrap();
}

/// Two ends of a fresh loopback TCP connection: (connecting side, accepting side).
async fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (client, (server, _)) =
        futures::future::try_join(TcpStream::connect(addr), listener.accept())
            .await
            .unwrap();
    (client, server)
}

/// Sets the recommended limit on `tcp` and checks that it took (Linux, Android) or that the
/// platform says it cannot (elsewhere).
fn limit_and_check<S: AsFd>(tcp: &S) {
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

#[test]
fn the_limit_is_set_on_smol_net_streams() {
    run(async {
        let (client, server) = tcp_pair().await;
        limit_and_check(&client);
        limit_and_check(&server);
        Ok(())
    });
}

#[test]
fn the_limit_is_set_on_async_std_streams() {
    run(async {
        let listener = Async::<std::net::TcpListener>::bind(([127, 0, 0, 1], 0))?;
        let addr = listener.get_ref().local_addr()?;
        let (client, (server, _)) = futures::future::try_join(
            Async::<std::net::TcpStream>::connect(addr),
            listener.accept(),
        )
        .await?;
        limit_and_check(&client);
        limit_and_check(&server);
        Ok(())
    });
}

/// Every stream the server accepts is echoed back, then finished.
async fn echo_server(mux: Mux<TcpStream>) {
    while let Ok(stream) = mux.accept().await {
        smol::spawn(async move {
            let (mut reader, mut writer) = stream.into_split();
            futures::io::copy(&mut reader, &mut writer).await?;
            writer.close().await
        })
        .detach();
    }
}

/// One stream echoes `BULK` bytes (written and read at once) while 50 small streams, one
/// after another, each get their 100 bytes back.
async fn echo_over_limited_sockets(version: Version) -> io::Result<()> {
    let (a, b) = tcp_pair().await;
    limit_and_check(&a);
    limit_and_check(&b);
    let config = MuxConfig::default().with_version(version);
    let client = smux_smol::client(a, config.clone()).unwrap();
    let server = smux_smol::server(b, config).unwrap();
    smol::spawn(echo_server(server)).detach();

    let bulk = {
        let (mut reader, mut writer) = client.connect().await?.into_split();
        let sent = payload(1, BULK);
        let expected = checksum(&sent);
        let write = smol::spawn(async move {
            writer.write_all(&sent).await?;
            writer.close().await
        });
        smol::spawn(async move {
            let mut echoed = Vec::with_capacity(BULK);
            reader.read_to_end(&mut echoed).await?;
            write.await?;
            assert_eq!(echoed.len(), BULK);
            assert_eq!(checksum(&echoed), expected, "bulk echo");
            io::Result::Ok(())
        })
    };

    for i in 0..50u64 {
        let mut s = client.connect().await?;
        let msg = payload(100 + i, 100);
        s.write_all(&msg).await?;
        s.close().await?;
        let mut echoed = Vec::new();
        s.read_to_end(&mut echoed).await?;
        assert_eq!(echoed, msg, "small echo {i}");
    }
    bulk.await?;
    client.close().await
}

#[test]
fn a_mux_over_limited_sockets_echoes_v1() {
    run(echo_over_limited_sockets(Version::V1));
}

#[test]
fn a_mux_over_limited_sockets_echoes_v2() {
    run(echo_over_limited_sockets(Version::V2));
}
