//! What can end a KCP session, and what a bad packet is.

use std::io;
use std::net::SocketAddr;

/// Why a KCP session ended. Sticky: once a session has failed, every later read and write of
/// its [`KcpStream`](crate::KcpStream) returns the same error (as an `io::Error` whose inner
/// error is this type).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum KcpError {
    /// The peer's host answered that nothing listens on its UDP port (ICMP port unreachable):
    /// the kcptun server is not running, or was stopped.
    #[error("the KCP peer {peer} is unreachable: nothing listens on that UDP port (is the kcptun server running?)")]
    PeerUnreachable {
        /// Where the packets went.
        peer: SocketAddr,
    },
    /// A segment was sent the configured number of times without an acknowledgement.
    #[error(
        "the KCP peer {peer} stopped acknowledging: a segment was retransmitted {limit} times"
    )]
    DeadLink {
        /// The peer.
        peer: SocketAddr,
        /// The retransmission limit that was reached.
        limit: u32,
    },
    /// The peer sent a packet that passed the checksum but that the KCP state machine could
    /// not take (sequence numbers or timestamps far outside the session's range).
    #[error("the KCP peer {peer} sent a packet the session cannot take: {reason}")]
    Malformed {
        /// The peer.
        peer: SocketAddr,
        /// What was wrong.
        reason: String,
    },
    /// The peer opened a new conversation from the same address (kcp-go does so when it
    /// reconnects), which replaces this one.
    #[error("the KCP peer {peer} started a new conversation, replacing this one")]
    Replaced {
        /// The peer.
        peer: SocketAddr,
    },
    /// The UDP socket failed.
    #[error("the UDP socket failed: {kind:?}: {message}")]
    Socket {
        /// The socket error's kind.
        kind: io::ErrorKind,
        /// The socket error's text.
        message: String,
    },
    /// The listener this session came from was dropped.
    #[error("the KCP listener was closed")]
    ListenerClosed,
}

impl KcpError {
    pub(crate) fn socket(e: &io::Error) -> Self {
        KcpError::Socket {
            kind: e.kind(),
            message: e.to_string(),
        }
    }

    /// The `io::ErrorKind` this error maps to.
    pub fn io_kind(&self) -> io::ErrorKind {
        match self {
            KcpError::PeerUnreachable { .. } => io::ErrorKind::ConnectionRefused,
            KcpError::DeadLink { .. } => io::ErrorKind::TimedOut,
            KcpError::Malformed { .. } => io::ErrorKind::InvalidData,
            KcpError::Replaced { .. } => io::ErrorKind::ConnectionReset,
            KcpError::Socket { kind, .. } => *kind,
            KcpError::ListenerClosed => io::ErrorKind::ConnectionAborted,
        }
    }
}

impl From<KcpError> for io::Error {
    fn from(e: KcpError) -> Self {
        io::Error::new(e.io_kind(), e)
    }
}

/// Why an incoming UDP datagram was dropped (counted, never fatal: anyone can send a UDP
/// datagram to the port).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PacketError {
    /// Shorter than the crypt header plus one KCP segment header.
    #[error("datagram of {len} bytes is too short for a kcp-go packet")]
    TooShort {
        /// The datagram's length.
        len: usize,
    },
    /// The CRC32 after the nonce does not match the rest (wrong key or crypt, or damage).
    #[error("checksum mismatch (wrong --key or --crypt, or a damaged datagram)")]
    Checksum,
    /// A segment header names a command KCP does not have, or a length past the datagram's
    /// end; or the datagram carries a FEC header (the peer runs with FEC shards, which this
    /// crate does not support: use `--datashard 0 --parityshard 0`).
    #[error("malformed KCP segment: {0}")]
    Segment(&'static str),
    /// The segments belong to another conversation.
    #[error("conversation {found:#x}, expected {expected:#x}")]
    WrongConversation {
        /// This session's conversation id.
        expected: u32,
        /// The datagram's.
        found: u32,
    },
}
