//! The peers measured: a peer is a way to get a server handler installed on one end of a TCP
//! connection and a stream opener on the other. Every setup takes the connection as a
//! [`SocketPair`], made by the bench (straight over loopback, or through a link emulator).

use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Instant;

use futures::channel::{mpsc, oneshot};
use futures::StreamExt;
use smux_tokio::MuxConfig;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_util::compat::{Compat, FuturesAsyncReadCompatExt, TokioAsyncReadCompatExt};

/// A stream of any peer, seen through tokio's I/O traits.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

/// A boxed future, as handlers and openers return.
pub type BoxFut<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;
/// Runs on every stream the server accepts (in a task of its own).
pub type Handler<S> = Arc<dyn Fn(S) -> BoxFut<()> + Send + Sync>;
/// Opens a client stream.
pub type Opener<S> = Arc<dyn Fn() -> BoxFut<io::Result<S>> + Send + Sync>;

/// The runtime a peer runs on.
#[derive(Clone, Copy)]
pub enum Rt {
    /// tokio (see [`tokio_runtime`]).
    Tokio,
    /// smol's default executor.
    Smol,
}

impl Rt {
    /// Spawns `f` and returns a future of its end.
    pub fn spawn<T: Send + 'static>(
        self,
        f: impl Future<Output = T> + Send + 'static,
    ) -> BoxFut<T> {
        match self {
            Rt::Tokio => {
                let handle = tokio::spawn(f);
                Box::pin(async move { handle.await.expect("task panicked") })
            }
            Rt::Smol => Box::pin(smol::spawn(f)),
        }
    }

    /// Sleeps until `at` on this runtime's timer.
    pub async fn sleep_until(self, at: Instant) {
        match self {
            Rt::Tokio => tokio::time::sleep_until(at.into()).await,
            Rt::Smol => {
                smol::Timer::at(at).await;
            }
        }
    }
}

/// The runtime of every tokio peer: `workers` worker threads, or a current-thread runtime.
pub fn tokio_runtime(current_thread: bool, workers: usize) -> tokio::runtime::Runtime {
    if current_thread {
        return tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers.max(1))
        .enable_all()
        .build()
        .expect("tokio runtime")
}

// ------------------------------------------------------------------------------------------------
// The connection

/// The two ends of one TCP connection, both with `TCP_NODELAY` (Go's default; every peer gets
/// the same).
pub struct SocketPair {
    /// The client's end.
    pub client: std::net::TcpStream,
    /// The server's end.
    pub server: std::net::TcpStream,
}

impl SocketPair {
    /// A connection over loopback.
    pub fn loopback() -> io::Result<SocketPair> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        SocketPair::accept_from(&listener, addr)
    }

    /// The client connects to `dial` (the listener's address, or a relay's in front of it)
    /// and the server's end is accepted from `listener`.
    pub fn accept_from(listener: &std::net::TcpListener, dial: SocketAddr) -> io::Result<Self> {
        let client = std::net::TcpStream::connect(dial)?;
        let (server, _) = listener.accept()?;
        client.set_nodelay(true)?;
        server.set_nodelay(true)?;
        Ok(SocketPair { client, server })
    }

    /// The pair as tokio sockets (call inside a tokio runtime).
    pub fn into_tokio(self) -> (TcpStream, TcpStream) {
        let convert = |s: std::net::TcpStream| {
            s.set_nonblocking(true).expect("nonblocking");
            TcpStream::from_std(s).expect("register with tokio")
        };
        (convert(self.client), convert(self.server))
    }

    /// The pair as smol sockets.
    pub fn into_smol(self) -> (smol::net::TcpStream, smol::net::TcpStream) {
        let convert =
            |s: std::net::TcpStream| smol::net::TcpStream::try_from(s).expect("register with smol");
        (convert(self.client), convert(self.server))
    }
}

// ------------------------------------------------------------------------------------------------
// smux-rs

/// A stream of ours on tokio.
pub type OursTokio = smux_tokio::MuxStream<TcpStream>;

/// smux-tokio: the server runs an accept loop; the client has no task of its own (the
/// streams' polls drive it, the documented default use) unless `client_drive`, which gives it
/// a task in `Mux::drive`.
pub async fn setup_ours_tokio(
    config: MuxConfig,
    client_drive: bool,
    pair: SocketPair,
    handler: Handler<OursTokio>,
) -> Opener<OursTokio> {
    let (c, s) = pair.into_tokio();
    let server = smux_tokio::Mux::server(s, config.clone()).expect("config");
    tokio::spawn(async move {
        while let Ok(st) = server.accept().await {
            tokio::spawn(handler(st));
        }
    });
    let client = smux_tokio::Mux::client(c, config).expect("config");
    if client_drive {
        let driven = client.clone();
        tokio::spawn(async move {
            let _ = driven.drive().await;
        });
    }
    Arc::new(move || {
        let client = client.clone();
        Box::pin(async move { client.connect().await })
    })
}

/// A stream of ours on smol, with tokio's I/O traits.
pub type OursSmol = Compat<smux_smol::MuxStream<smol::net::TcpStream>>;

/// smux-smol on smol's default executor, the same shape as [`setup_ours_tokio`]; its
/// futures-io streams get tokio's traits through tokio-util's compat wrapper.
pub async fn setup_ours_smol(
    config: MuxConfig,
    client_drive: bool,
    pair: SocketPair,
    handler: Handler<OursSmol>,
) -> Opener<OursSmol> {
    let (c, s) = pair.into_smol();
    let server = smux_smol::server(s, config.clone()).expect("config");
    smol::spawn(async move {
        while let Ok(st) = server.accept().await {
            smol::spawn(handler(st.compat())).detach();
        }
    })
    .detach();
    let client = smux_smol::client(c, config).expect("config");
    if client_drive {
        let driven = client.clone();
        smol::spawn(async move {
            let _ = driven.drive().await;
        })
        .detach();
    }
    Arc::new(move || {
        let client = client.clone();
        Box::pin(async move { Ok(client.connect().await?.compat()) })
    })
}

// ------------------------------------------------------------------------------------------------
// async_smux 0.4

/// An async_smux stream.
pub type AsyncSmuxStream = async_smux::MuxStream<TcpStream>;

/// async_smux 0.4 with its builder's defaults; each end's worker runs in a task.
pub async fn setup_async_smux(
    pair: SocketPair,
    handler: Handler<AsyncSmuxStream>,
) -> Opener<AsyncSmuxStream> {
    let (c, s) = pair.into_tokio();
    let (server_connector, mut acceptor, worker) =
        async_smux::MuxBuilder::server().with_connection(s).build();
    tokio::spawn(worker);
    tokio::spawn(async move {
        let _keep = server_connector;
        while let Some(st) = acceptor.accept().await {
            tokio::spawn(handler(st));
        }
    });
    let (connector, client_acceptor, worker) =
        async_smux::MuxBuilder::client().with_connection(c).build();
    tokio::spawn(worker);
    // The session ends when all its handles are gone: the opener keeps the client's acceptor.
    let keep = Arc::new(Mutex::new(client_acceptor));
    Arc::new(move || {
        let _ = &keep;
        let opened = connector.connect().map_err(io::Error::other);
        Box::pin(async move { opened })
    })
}

// ------------------------------------------------------------------------------------------------
// yamux 0.14

/// A yamux stream with tokio's I/O traits.
pub type YamuxStream = Compat<yamux::Stream>;
type OpenRequest = oneshot::Sender<io::Result<YamuxStream>>;

/// A yamux connection driven by a task of its own (yamux needs `poll_next_inbound` polled
/// for any I/O): it hands inbound streams to `handler` (when given) and opens outbound
/// streams on request.
fn yamux_connection(
    socket: TcpStream,
    mode: yamux::Mode,
    config: yamux::Config,
    handler: Option<Handler<YamuxStream>>,
) -> mpsc::UnboundedSender<OpenRequest> {
    let (requests_tx, mut requests) = mpsc::unbounded::<OpenRequest>();
    let mut conn = yamux::Connection::new(socket.compat(), config, mode);
    tokio::spawn(async move {
        let mut waiting: Option<OpenRequest> = None;
        poll_fn(|cx| loop {
            let mut progress = false;
            if waiting.is_none() {
                if let Poll::Ready(Some(request)) = requests.poll_next_unpin(cx) {
                    waiting = Some(request);
                    progress = true;
                }
            }
            if waiting.is_some() {
                if let Poll::Ready(opened) = conn.poll_new_outbound(cx) {
                    let opened = opened.map(|s| s.compat()).map_err(io::Error::other);
                    let _ = waiting.take().expect("waiting").send(opened);
                    progress = true;
                }
            }
            match conn.poll_next_inbound(cx) {
                Poll::Ready(Some(Ok(stream))) => {
                    if let Some(handler) = &handler {
                        tokio::spawn(handler(stream.compat()));
                    }
                    progress = true;
                }
                Poll::Ready(Some(Err(_)) | None) => return Poll::Ready(()),
                Poll::Pending => {}
            }
            if !progress {
                return Poll::Pending;
            }
        })
        .await;
    });
    requests_tx
}

/// yamux 0.14 with `Config::default()`, except with `max_streams`: then `max_num_streams` is
/// raised to it (and the connection receive window unbounded, which yamux requires for that
/// many streams).
pub async fn setup_yamux(
    max_streams: Option<usize>,
    pair: SocketPair,
    handler: Handler<YamuxStream>,
) -> Opener<YamuxStream> {
    let mut config = yamux::Config::default();
    if let Some(n) = max_streams {
        config.set_max_connection_receive_window(None);
        config.set_max_num_streams(n);
    }
    let (c, s) = pair.into_tokio();
    // The server opens no streams: its request channel is not needed (its driver runs on).
    drop(yamux_connection(
        s,
        yamux::Mode::Server,
        config.clone(),
        Some(handler),
    ));
    let client = yamux_connection(c, yamux::Mode::Client, config, None);
    Arc::new(move || {
        let (tx, rx) = oneshot::channel();
        let sent = client.unbounded_send(tx);
        Box::pin(async move {
            sent.map_err(|_| io::Error::other("yamux connection ended"))?;
            rx.await
                .map_err(|_| io::Error::other("yamux connection ended"))?
        })
    })
}
