//! The relay: a thread with its own tokio runtime, an accept loop, and one pair of emulated
//! paths per accepted connection.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::oneshot;

use super::{path, LinkSpec};

/// A running link emulator: see the [module documentation](super).
///
/// Dropping it stops its thread and closes every connection it relays.
#[derive(Debug)]
pub struct Relay {
    addr: SocketAddr,
    counters: Arc<Counters>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// Bytes written to the far side, per direction, over all connections.
#[derive(Debug, Default)]
struct Counters {
    to_target: AtomicU64,
    to_client: AtomicU64,
}

impl Relay {
    /// Starts the relay on its own thread (its own tokio runtime), listening on
    /// 127.0.0.1:0; every accepted connection is relayed to `target` through its own
    /// emulated path (both directions).
    ///
    /// # Errors
    ///
    /// If the runtime, the thread or the listening socket cannot be set up.
    pub fn start(target: SocketAddr, spec: LinkSpec) -> io::Result<Relay> {
        let counters = Arc::new(Counters::default());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = oneshot::channel();
        let shared = counters.clone();
        let thread = std::thread::Builder::new()
            .name("netem-relay".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let listener = match listen(spec) {
                        Ok(listener) => listener,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = ready_tx.send(listener.local_addr());
                    tokio::select! {
                        _ = stopped => {}
                        () = accept_loop(listener, target, spec, shared) => {}
                    }
                });
                // Dropping the runtime drops every connection's task and closes its sockets.
            })?;
        let addr = match ready_rx.recv() {
            Ok(addr) => addr?,
            Err(_) => return Err(io::Error::other("the relay thread ended while starting")),
        };
        Ok(Relay {
            addr,
            counters,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Bytes relayed so far (client→target, target→client): written to the far side's socket.
    pub fn relayed(&self) -> (u64, u64) {
        (
            self.counters.to_target.load(Ordering::Relaxed),
            self.counters.to_client.load(Ordering::Relaxed),
        )
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A socket with the relay's options: the spec's buffer sizes, set before it listens or
/// connects (auto-tuning then leaves them alone).
fn socket(spec: LinkSpec) -> io::Result<TcpSocket> {
    let socket = TcpSocket::new_v4()?;
    if spec.socket_buffer > 0 {
        let size = u32::try_from(spec.socket_buffer).unwrap_or(u32::MAX);
        socket.set_send_buffer_size(size)?;
        socket.set_recv_buffer_size(size)?;
    }
    socket.set_nodelay(true)?;
    Ok(socket)
}

/// The listening socket; accepted connections inherit its buffer sizes.
fn listen(spec: LinkSpec) -> io::Result<TcpListener> {
    let socket = socket(spec)?;
    socket.bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
    socket.listen(1024)
}

async fn accept_loop(
    listener: TcpListener,
    target: SocketAddr,
    spec: LinkSpec,
    counters: Arc<Counters>,
) {
    loop {
        match listener.accept().await {
            Ok((client, _)) => {
                tokio::spawn(relay_connection(client, target, spec, counters.clone()));
            }
            // Out of file descriptors and the like: try again shortly.
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// Connects to `target` and relays both directions until both ended or one failed. A client
/// whose target cannot be reached is closed with a reset.
async fn relay_connection(
    mut client: TcpStream,
    target: SocketAddr,
    spec: LinkSpec,
    counters: Arc<Counters>,
) {
    if client.set_nodelay(true).is_err() {
        return;
    }
    let mut server = match socket(spec) {
        Ok(socket) => match socket.connect(target).await {
            Ok(server) => server,
            Err(_) => return reset(&client),
        },
        Err(_) => return reset(&client),
    };
    let (client_read, client_write) = client.split();
    let (server_read, server_write) = server.split();
    let up = path::run(client_read, server_write, spec, &counters.to_target);
    let down = path::run(server_read, client_write, spec, &counters.to_client);
    if tokio::try_join!(up, down).is_err() {
        reset(&client);
        reset(&server);
    }
}

/// Makes the coming close of `stream` a reset (`SO_LINGER` 0), as the failure it forwards.
fn reset(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
}
