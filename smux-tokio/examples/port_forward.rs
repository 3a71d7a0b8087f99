//! A port-forwarding tunnel, the way kcptun or frp use smux: every TCP connection to a local
//! port becomes a stream of one multiplexed connection, and the far end dials the target for
//! each stream.
//!
//! ```text
//! app --TCP--> entry (listens) ==one smux connection==> exit --TCP--> target
//! ```
//!
//! All in one process over loopback: the target is a TCP echo server; 20 apps connect to the
//! entry at once, each sends its own payload, half-closes, reads the echo and checks it.
//! `tunnel_entry` and `tunnel_exit` are the whole tunnel; the tests
//! (`smux-tokio/tests/tunnel.rs`) run them too.
//!
//! Run: `cargo run -p smux-tokio --example port_forward`

use std::io;
use std::net::SocketAddr;

use futures::StreamExt;
use smux_tokio::{Mux, MuxConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The entry of the tunnel: each connection accepted on `listener` gets a stream of `mux`,
/// and bytes are copied both ways (a half-close on one side is passed on to the other) until
/// both directions are done. Runs until `listener` fails.
pub async fn tunnel_entry(listener: TcpListener, mux: Mux<TcpStream>) -> io::Result<()> {
    // Nothing polls the mux while no app is connected: a task in `drive` keeps reading and
    // the keepalive going, so an idle tunnel stays up (and notices a dead exit).
    tokio::spawn({
        let mux = mux.clone();
        async move { mux.drive().await }
    });
    loop {
        let (mut tcp, _) = listener.accept().await?;
        tcp.set_nodelay(true)?;
        let mut stream = mux.connect().await?;
        tokio::spawn(async move {
            let _ = tokio::io::copy_bidirectional(&mut tcp, &mut stream).await;
        });
    }
}

/// The exit of the tunnel: for each stream the peer opens on `mux`, dials `target` and copies
/// bytes both ways. Returns when the connection ends (`Ok` when it was closed cleanly).
pub async fn tunnel_exit(mux: Mux<TcpStream>, target: SocketAddr) -> io::Result<()> {
    let mut incoming = mux.incoming();
    while let Some(stream) = incoming.next().await {
        let mut stream = stream?;
        tokio::spawn(async move {
            match TcpStream::connect(target).await {
                Ok(mut tcp) => {
                    let _ = tcp.set_nodelay(true);
                    let _ = tokio::io::copy_bidirectional(&mut stream, &mut tcp).await;
                }
                // Dropping the stream sends FIN: the app sees its connection end.
                Err(e) => eprintln!("exit: cannot reach {target}: {e}"),
            }
        });
    }
    Ok(())
}

/// A TCP echo server: each connection gets back what it sends, then a FIN.
async fn echo_target(listener: TcpListener) -> io::Result<()> {
    loop {
        let (mut tcp, _) = listener.accept().await?;
        tokio::spawn(async move {
            let (mut reader, mut writer) = tcp.split();
            tokio::io::copy(&mut reader, &mut writer).await?;
            writer.shutdown().await
        });
    }
}

/// Two muxes over one loopback TCP connection: (entry side, exit side).
async fn tunnel_link(config: MuxConfig) -> io::Result<(Mux<TcpStream>, Mux<TcpStream>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (entry, exit) = tokio::join!(TcpStream::connect(addr), listener.accept());
    let (entry, exit) = (entry?, exit?.0);
    entry.set_nodelay(true)?;
    exit.set_nodelay(true)?;
    // A small kernel send queue lets the mux, not the kernel, order streams on slow links.
    #[cfg(unix)]
    for tcp in [&entry, &exit] {
        smux_tokio::limit_unsent(tcp, smux_tokio::RECOMMENDED_UNSENT_LIMIT).ok();
    }
    Ok((
        Mux::client(entry, config.clone()).map_err(io::Error::other)?,
        Mux::server(exit, config).map_err(io::Error::other)?,
    ))
}

/// Starts a target echo server and a tunnel to it; returns the tunnel's local address.
pub async fn start_tunnel_to_echo(config: MuxConfig) -> io::Result<SocketAddr> {
    let target = TcpListener::bind("127.0.0.1:0").await?;
    let target_addr = target.local_addr()?;
    tokio::spawn(echo_target(target));
    let (entry_mux, exit_mux) = tunnel_link(config).await?;
    tokio::spawn(tunnel_exit(exit_mux, target_addr));
    let entry = TcpListener::bind("127.0.0.1:0").await?;
    let entry_addr = entry.local_addr()?;
    tokio::spawn(tunnel_entry(entry, entry_mux));
    Ok(entry_addr)
}

/// What an app does: sends `payload` through the tunnel, half-closes, reads the echo.
pub async fn app(entry: SocketAddr, payload: Vec<u8>) -> io::Result<Vec<u8>> {
    let tcp = TcpStream::connect(entry).await?;
    tcp.set_nodelay(true)?;
    let (mut reader, mut writer) = tcp.into_split();
    let send = tokio::spawn(async move {
        writer.write_all(&payload).await?;
        writer.shutdown().await
    });
    let mut echo = Vec::new();
    reader.read_to_end(&mut echo).await?;
    send.await??;
    Ok(echo)
}

#[tokio::main]
async fn main() -> io::Result<()> {
    let entry = start_tunnel_to_echo(MuxConfig::default()).await?;
    println!("tunnel entry listening on {entry}");
    let apps: Vec<_> = (0..20u8)
        .map(|i| {
            let payload = vec![i; 1000 + usize::from(i) * 50_000];
            tokio::spawn(async move {
                let echo = app(entry, payload.clone()).await?;
                assert_eq!(echo, payload, "app {i}: the echo differs");
                Ok::<_, io::Error>(echo.len())
            })
        })
        .collect();
    let mut total = 0;
    for (i, task) in apps.into_iter().enumerate() {
        let len = task.await??;
        total += len;
        println!("app {i}: {len} bytes through the tunnel and back, checked");
    }
    println!("20 connections, {total} bytes each way, over one smux connection");
    Ok(())
}
