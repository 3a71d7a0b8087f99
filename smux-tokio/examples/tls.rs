//! smux over TLS: a server and a client in one process, over loopback TCP wrapped in
//! tokio-rustls, with a self-signed certificate made at run time. A mux wraps any tokio
//! `AsyncRead + AsyncWrite`, so the only TLS-specific code is the handshake.
//!
//! The client opens 10 streams at once; the server echoes each (until the client's FIN, then
//! its own), and the client checks every echo.
//!
//! Run: `cargo run -p smux-tokio --example tls`

use std::sync::Arc;

use futures::StreamExt;
use smux_tokio::{Mux, MuxConfig, MuxStream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName,
};
use tokio_rustls::rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// A certificate for `localhost` and its key, made now.
fn self_signed() -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), Error> {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])?;
    let key = PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der());
    Ok((certified.cert.der().clone(), key.into()))
}

/// Echoes a stream until the client's FIN, then sends ours.
async fn echo<T>(mut stream: MuxStream<T>) -> std::io::Result<()>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut reader, mut writer) = tokio::io::split(&mut stream);
    tokio::io::copy(&mut reader, &mut writer).await?;
    stream.shutdown().await
}

async fn server(listener: TcpListener, acceptor: TlsAcceptor) -> Result<(), Error> {
    let (tcp, _) = listener.accept().await?;
    // A small kernel send queue lets the mux, not the kernel, order streams on slow links.
    #[cfg(unix)]
    smux_tokio::limit_unsent(&tcp, smux_tokio::RECOMMENDED_UNSENT_LIMIT).ok();
    let tls = acceptor.accept(tcp).await?;
    println!("server: TLS handshake done");
    let mux = Mux::server(tls, MuxConfig::default())?;
    let mut incoming = mux.incoming();
    while let Some(stream) = incoming.next().await {
        tokio::spawn(echo(stream?));
    }
    println!("server: the client closed the connection");
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let (cert, key) = self_signed()?;
    let server_config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)?;
    let mut roots = RootCertStore::empty();
    roots.add(cert)?;
    let client_config = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();

    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(server(listener, TlsAcceptor::from(Arc::new(server_config))));

    let tcp = TcpStream::connect(addr).await?;
    // A small kernel send queue lets the mux, not the kernel, order streams on slow links.
    #[cfg(unix)]
    smux_tokio::limit_unsent(&tcp, smux_tokio::RECOMMENDED_UNSENT_LIMIT).ok();
    let connector = TlsConnector::from(Arc::new(client_config));
    let tls = connector
        .connect(ServerName::try_from("localhost")?, tcp)
        .await?;
    println!("client: TLS handshake done, server certificate verified");
    let mux = Mux::client(tls, MuxConfig::default())?;

    let mut tasks = Vec::new();
    for i in 0..10 {
        let mux = mux.clone();
        tasks.push(tokio::spawn(async move {
            let mut stream = mux.connect().await?;
            let message = format!("message {i} over TLS").repeat(1000);
            stream.write_all(message.as_bytes()).await?;
            stream.shutdown().await?;
            let mut echo = Vec::new();
            stream.read_to_end(&mut echo).await?;
            assert_eq!(echo, message.as_bytes(), "stream {i}");
            Ok::<_, std::io::Error>((stream.id(), echo.len()))
        }));
    }
    for task in tasks {
        let (id, len) = task.await??;
        println!("client: stream {id}: {len} bytes echoed and checked");
    }
    mux.close().await?;
    server.await??;
    Ok(())
}
