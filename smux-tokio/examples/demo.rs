//! The smux-rs demo: a server and a client in one process over loopback TCP, with tokio.
//!
//! For protocol versions 1 and 2 it opens a connection, echoes a message on 100 sequential
//! streams, then pushes 256 MiB through 8 concurrent streams, and prints what happened and
//! the throughput it saw.
//!
//! Run: `cargo run --release -p smux-tokio --example demo`

use std::time::Instant;

use smux_tokio::{Mux, MuxConfig, Version};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const STREAMS: usize = 8;
const BYTES_PER_STREAM: usize = 32 * 1024 * 1024;

/// The server: accepts streams; a stream whose first byte is `e` is echoed, any other is
/// drained and answered with the number of bytes it carried.
async fn serve(mux: Mux<TcpStream>) {
    while let Ok(mut stream) = mux.accept().await {
        tokio::spawn(async move {
            let mut kind = [0u8; 1];
            if stream.read_exact(&mut kind).await.is_err() {
                return;
            }
            let mut buf = vec![0u8; 64 * 1024];
            let mut total = 1u64;
            loop {
                let n = match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                total += n as u64;
                if kind[0] == b'e' && stream.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
            if kind[0] != b'e' {
                let _ = stream.write_all(&total.to_le_bytes()).await;
            }
            let _ = stream.shutdown().await;
        });
    }
}

async fn run(version: Version) -> std::io::Result<()> {
    let config = MuxConfig::default().with_version(version);
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server_config = config.clone();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        tcp.set_nodelay(true).ok();
        // A small kernel send queue lets the mux, not the kernel, order streams on slow links.
        #[cfg(unix)]
        smux_tokio::limit_unsent(&tcp, smux_tokio::RECOMMENDED_UNSENT_LIMIT).ok();
        serve(Mux::server(tcp, server_config).expect("config")).await;
    });
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    // A small kernel send queue lets the mux, not the kernel, order streams on slow links.
    #[cfg(unix)]
    smux_tokio::limit_unsent(&tcp, smux_tokio::RECOMMENDED_UNSENT_LIMIT).ok();
    let mux = Mux::client(tcp, config).expect("config");
    println!("protocol {version:?}: connected to {addr}");

    // 100 sequential streams: open, send, half-close, read the echo back.
    let start = Instant::now();
    for i in 0..100 {
        let mut s = mux.connect().await?;
        let msg = format!("e hello from stream {}", s.id());
        s.write_all(msg.as_bytes()).await?;
        s.shutdown().await?;
        let mut echo = Vec::new();
        s.read_to_end(&mut echo).await?;
        assert_eq!(echo, &msg.as_bytes()[1..], "echo {i}");
    }
    let elapsed = start.elapsed();
    println!(
        "  100 sequential streams echoed in {:.1} ms ({:.0} open+echo+close per second)",
        elapsed.as_secs_f64() * 1000.0,
        100.0 / elapsed.as_secs_f64()
    );

    // Bulk: 8 concurrent streams, 32 MiB each; the server reports how much it received.
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..STREAMS {
        let mux = mux.clone();
        tasks.push(tokio::spawn(async move {
            let mut s = mux.connect().await?;
            s.write_all(b"c").await?;
            let chunk = vec![0x5au8; 64 * 1024];
            for _ in 0..BYTES_PER_STREAM / chunk.len() {
                s.write_all(&chunk).await?;
            }
            s.shutdown().await?;
            let mut count = [0u8; 8];
            s.read_exact(&mut count).await?;
            Ok::<u64, std::io::Error>(u64::from_le_bytes(count))
        }));
    }
    for task in tasks {
        let received = task.await.expect("task")?;
        assert_eq!(received, BYTES_PER_STREAM as u64 + 1);
    }
    let elapsed = start.elapsed();
    let total = (STREAMS * BYTES_PER_STREAM) as f64;
    println!(
        "  {} streams x {} MiB sent and confirmed in {:.0} ms: {:.2} GiB/s",
        STREAMS,
        BYTES_PER_STREAM >> 20,
        elapsed.as_secs_f64() * 1000.0,
        total / elapsed.as_secs_f64() / f64::from(1 << 30)
    );
    let stats = mux.stats();
    println!(
        "  client: {} frames / {} MiB out, {} frames in, {} streams opened",
        stats.frames_out,
        stats.bytes_out >> 20,
        stats.frames_in,
        stats.streams_opened
    );
    mux.close().await?;
    println!("  closed gracefully");
    Ok(())
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    println!("smux-rs demo: server and client in one process over loopback TCP (tokio)");
    run(Version::V1).await?;
    run(Version::V2).await?;
    Ok(())
}
