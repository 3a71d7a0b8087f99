//! The server side: one UDP socket, a KCP session per peer address (as kcp-go's `Listener`).

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::KcpConfig;
use crate::error::KcpError;
use crate::packet;
use crate::session::{drive, KcpStream, Route, Shared};

/// New sessions waiting for [`KcpListener::accept`] (kcp-go's `acceptBacklog`, 128); a new
/// peer beyond it is not taken (its next datagram tries again).
pub const ACCEPT_BACKLOG: usize = 128;
/// Sessions one listener keeps at once; a new peer beyond it is not taken.
pub const MAX_SESSIONS: usize = 4096;

/// Listens for KCP sessions in kcp-go's packet format (`--crypt none`, no FEC), as a kcptun
/// server does: the first valid datagram from a new address opens a session with the
/// conversation id it carries; a datagram from a known address with another conversation id
/// and sequence number 0 (kcp-go reconnecting) replaces the old session.
pub struct KcpListener {
    local: SocketAddr,
    accepted: mpsc::Receiver<(KcpStream, SocketAddr)>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for KcpListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KcpListener")
            .field("local", &self.local)
            .finish()
    }
}

impl KcpListener {
    /// Binds a UDP socket at `addr` and starts taking sessions with `config`.
    pub async fn bind(addr: SocketAddr, config: KcpConfig) -> io::Result<KcpListener> {
        config.validate().map_err(io::Error::other)?;
        let socket = Arc::new(crate::udp_socket(addr, config.sockbuf)?);
        let local = socket.local_addr()?;
        let (tx, accepted) = mpsc::channel(ACCEPT_BACKLOG);
        let task = tokio::spawn(listen(socket, config, tx));
        Ok(KcpListener {
            local,
            accepted,
            task,
        })
    }

    /// The bound UDP address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The next new session and its peer's address.
    pub async fn accept(&mut self) -> io::Result<(KcpStream, SocketAddr)> {
        self.accepted
            .recv()
            .await
            .ok_or_else(|| KcpError::ListenerClosed.into())
    }
}

impl Drop for KcpListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Sessions(HashMap<SocketAddr, Arc<Shared>>);

impl Drop for Sessions {
    /// The listener's task is gone: no datagram reaches these sessions any more.
    fn drop(&mut self) {
        for s in self.0.values() {
            s.fail(KcpError::ListenerClosed);
        }
    }
}

async fn listen(
    socket: Arc<UdpSocket>,
    config: KcpConfig,
    accepted: mpsc::Sender<(KcpStream, SocketAddr)>,
) {
    let mut sessions = Sessions(HashMap::new());
    let mut buf = vec![0u8; 65_536];
    loop {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            // An ICMP error about an earlier send to some peer: not the listener's.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset
                ) =>
            {
                continue
            }
            Err(_) => return,
        };
        let datagram = &buf[..n];
        let Ok(d) = packet::decode(datagram) else {
            continue;
        };
        let (conv, sn) = (d.first.conv, d.first.sn);
        if let Some(s) = sessions.0.get(&from) {
            if s.conv() == conv {
                // A finished session's stragglers are dropped; the peer gets nothing back.
                let _ = s.input(datagram);
                continue;
            }
            if sn != 0 && !s.is_finished() {
                continue;
            }
            if let Some(old) = sessions.0.remove(&from) {
                old.fail(KcpError::Replaced { peer: from });
            }
        }
        if sessions.0.len() >= MAX_SESSIONS {
            sessions.0.retain(|_, s| !s.is_finished());
        }
        if sessions.0.len() >= MAX_SESSIONS || accepted.capacity() == 0 {
            continue;
        }
        let Ok(shared) = Shared::new(conv, from, &config) else {
            continue;
        };
        let _ = shared.input(datagram);
        tokio::spawn(drive(shared.clone(), socket.clone(), Route::To(from)));
        sessions.0.insert(from, shared.clone());
        if accepted
            .try_send((KcpStream::from_shared(shared), from))
            .is_err()
        {
            // Nobody accepts any more (the KcpListener is being dropped).
            return;
        }
    }
}
