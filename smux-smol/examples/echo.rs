//! An smux echo server and client in one process, over loopback TCP, with smol.
//!
//! The server accepts one TCP connection, wraps it with [`smux_smol::server`] and echoes every
//! stream in a task of its own; the client opens 100 streams one after another, writes a
//! message on each, half-closes it, reads the echo back and checks it.
//!
//! ```text
//! cargo run -p smux-smol --example smol_echo
//! ```

use std::io;
use std::time::Instant;

use futures::io::{AsyncReadExt, AsyncWriteExt};
use smol::net::{TcpListener, TcpStream};
use smux_smol::MuxConfig;

const STREAMS: usize = 100;

/// Accepts one connection and echoes each of its streams until the client goes away.
async fn serve(listener: TcpListener) -> io::Result<()> {
    let (tcp, peer) = listener.accept().await?;
    tcp.set_nodelay(true)?;
    println!("server: connection from {peer}");
    let mux = smux_smol::server(tcp, MuxConfig::default()).map_err(io::Error::other)?;
    loop {
        let stream = match mux.accept().await {
            Ok(stream) => stream,
            // The client closed the connection: done.
            Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => return Ok(()),
            Err(e) => return Err(e),
        };
        smol::spawn(async move {
            let id = stream.id();
            let (mut reader, mut writer) = stream.split();
            // Copy until the client's FIN, then send ours.
            let result = async {
                futures::io::copy(&mut reader, &mut writer).await?;
                writer.close().await
            }
            .await;
            if let Err(e) = result {
                eprintln!("server: stream {id:?}: {e}");
            }
        })
        .detach();
    }
}

async fn run_client(addr: std::net::SocketAddr) -> io::Result<()> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let mux = smux_smol::client(tcp, MuxConfig::default()).map_err(io::Error::other)?;
    let started = Instant::now();
    let mut bytes = 0;
    for i in 0..STREAMS {
        let mut stream = mux.connect().await?;
        let message = format!("hello #{i} from stream {:?}", stream.id()).into_bytes();
        stream.write_all(&message).await?;
        stream.close().await?; // FIN: the echo can still be read
        let mut echo = Vec::new();
        stream.read_to_end(&mut echo).await?;
        if echo != message {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("stream {i}: echo mismatch"),
            ));
        }
        bytes += echo.len();
    }
    let elapsed = started.elapsed();
    let stats = mux.stats();
    mux.close().await?;
    println!(
        "client: {STREAMS} streams echoed, {bytes} bytes verified in {elapsed:.2?} \
         ({} bytes out, {} bytes in on the wire)",
        stats.bytes_out, stats.bytes_in
    );
    Ok(())
}

fn main() -> io::Result<()> {
    smol::block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        println!("server: listening on {addr}");
        let server = smol::spawn(serve(listener));
        run_client(addr).await?;
        server.await?;
        println!("server: connection closed");
        Ok(())
    })
}
