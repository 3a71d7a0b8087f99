//! An echo server and client in one process, over loopback TCP.
//!
//! The server accepts one TCP connection, wraps it in a server [`Mux`] and echoes every stream
//! the client opens (one task per stream: copy until the client's FIN, then FIN back). The
//! client opens 100 streams one after another; on each it writes a message, half-closes,
//! reads the echo to the end and checks it.
//!
//! Run: `cargo run -p smux-tokio --example echo`

use std::time::Instant;

use smux_tokio::{Mux, MuxConfig, MuxStream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const STREAMS: usize = 100;

/// Copies one stream back to the peer until its FIN, then sends ours.
async fn echo(mut stream: MuxStream<TcpStream>) -> std::io::Result<u64> {
    let mut buf = vec![0u8; 16 * 1024];
    let mut total = 0;
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        stream.write_all(&buf[..n]).await?;
        total += n as u64;
    }
    stream.shutdown().await?;
    Ok(total)
}

/// Accepts one connection and echoes its streams until it ends.
async fn serve(listener: TcpListener) -> std::io::Result<usize> {
    let (tcp, peer) = listener.accept().await?;
    tcp.set_nodelay(true)?;
    println!("server: connection from {peer}");
    let mux = Mux::server(tcp, MuxConfig::default()).map_err(std::io::Error::other)?;
    let mut streams = 0;
    loop {
        match mux.accept().await {
            Ok(stream) => {
                streams += 1;
                tokio::spawn(async move {
                    let id = stream.id();
                    if let Err(e) = echo(stream).await {
                        eprintln!("server: stream {id}: {e}");
                    }
                });
            }
            // The client closed the connection: that is the end of the session.
            Err(e) => {
                println!("server: connection ended ({e})");
                return Ok(streams);
            }
        }
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(serve(listener));

    let start = Instant::now();
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let mux = Mux::client(tcp, MuxConfig::default()).map_err(std::io::Error::other)?;

    let mut bytes = 0;
    for i in 0..STREAMS {
        let mut stream = mux.connect().await?;
        let message = format!("message {i} on stream {}: ", stream.id()).repeat(i + 1);
        stream.write_all(message.as_bytes()).await?;
        stream.shutdown().await?; // FIN: the echo can still be read
        let mut echoed = Vec::new();
        stream.read_to_end(&mut echoed).await?;
        if echoed != message.as_bytes() {
            return Err(std::io::Error::other(format!(
                "stream {}: echo differs from the message",
                stream.id()
            )));
        }
        bytes += echoed.len();
    }
    let elapsed = start.elapsed();
    let stats = mux.stats();
    mux.close().await?;
    let served = server.await.map_err(std::io::Error::other)??;

    println!(
        "client: {STREAMS} streams echoed and verified, {bytes} bytes each way, in {elapsed:.2?}"
    );
    println!(
        "client: {} frames / {} bytes out, {} frames / {} bytes in; server accepted {served} streams",
        stats.frames_out, stats.bytes_out, stats.frames_in, stats.bytes_in
    );
    Ok(())
}
