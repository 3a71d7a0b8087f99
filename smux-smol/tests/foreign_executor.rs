//! `AsyncIoTimer` under an executor that is not smol's (`futures::executor::block_on`, no
//! runtime at all): the keepalive timer still fires while the only task waits, so a silent
//! peer is noticed. Without a timer this `drive()` would wait forever.

use std::time::{Duration, Instant};

use smux_smol::{AsyncIoTimer, Mux, MuxConfig};

#[test]
fn keepalive_timeout_fires_under_a_plain_block_on() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    // The peer connects and then says nothing.
    let _silent = std::net::TcpStream::connect(addr).unwrap();
    let (tcp, _) = listener.accept().unwrap();
    let tcp = smol::net::TcpStream::try_from(tcp).unwrap();
    let config = MuxConfig::default()
        .with_keep_alive_interval(Duration::from_millis(50))
        .with_keep_alive_timeout(Duration::from_millis(300));
    let mux = Mux::server(tcp, config, AsyncIoTimer).unwrap();
    let started = Instant::now();
    let end = futures::executor::block_on(mux.drive());
    let err = end.expect_err("the silent peer must time out");
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(10),
        "{waited:?}"
    );
}
