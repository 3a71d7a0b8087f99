//! Echo, as the original async-smux README has it: a server and a client in one process over
//! loopback TCP.
//!
//! The server accepts streams in a loop (`Mux::incoming`); on each it reads once and writes
//! back what it read. The client opens 100 streams one after another, writes `hello` on each,
//! reads the reply and prints `{i}: {reply}`.
//!
//! Run: `cargo run -p smux-tokio --example echo`

use futures::StreamExt;
use smux_tokio::{Mux, MuxConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn server(listener: TcpListener) -> std::io::Result<()> {
    let (tcp, _) = listener.accept().await?;
    // A small kernel send queue lets the mux, not the kernel, order streams on slow links.
    #[cfg(unix)]
    smux_tokio::limit_unsent(&tcp, smux_tokio::RECOMMENDED_UNSENT_LIMIT).ok();
    let mux = Mux::server(tcp, MuxConfig::default()).expect("valid config");
    let mut incoming = mux.incoming();
    // Ends when the client closes the connection.
    while let Some(stream) = incoming.next().await {
        let mut stream = stream?;
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let n = stream.read(&mut buf).await?;
            stream.write_all(&buf[..n]).await?;
            stream.shutdown().await // FIN: the reply is complete
        });
    }
    Ok(())
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(server(listener));

    let tcp = TcpStream::connect(addr).await?;
    // A small kernel send queue lets the mux, not the kernel, order streams on slow links.
    #[cfg(unix)]
    smux_tokio::limit_unsent(&tcp, smux_tokio::RECOMMENDED_UNSENT_LIMIT).ok();
    let mux = Mux::client(tcp, MuxConfig::default()).expect("valid config");
    for i in 0..100 {
        let mut stream = mux.connect().await?;
        stream.write_all(b"hello").await?;
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply).await?;
        println!("{i}: {}", String::from_utf8_lossy(&reply));
    }
    mux.close().await?;
    server.await??;
    Ok(())
}
