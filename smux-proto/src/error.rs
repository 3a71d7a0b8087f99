//! Errors, named after what went wrong.
//!
//! A session-level [`Error`] is fatal and sticky: once a session has failed, every later call
//! that can fail reports the same error.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use crate::frame::Cmd;
use crate::stream_id::StreamId;

/// Something the peer sent that the protocol forbids. Always fatal to the session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolViolation {
    /// The VER byte differs from the session's configured version.
    #[error("frame has version {received}, but the session speaks version {expected}")]
    WrongVersion {
        /// The configured version.
        expected: u8,
        /// The VER byte received.
        received: u8,
    },
    /// The CMD byte is not one of SYN, FIN, PSH, NOP, UPD.
    #[error("unknown command {0}")]
    UnknownCommand(u8),
    /// A SYN, FIN or NOP with a payload, or an UPD whose payload is not 8 bytes.
    #[error("{cmd:?} frame on stream {stream_id} has length {len}, which its command forbids")]
    BadControlLength {
        /// The command.
        cmd: Cmd,
        /// The SID field.
        stream_id: StreamId,
        /// The LEN field.
        len: u16,
    },
    /// An UPD frame arrived in a version 1 session.
    #[error("UPD frame on stream {stream_id} in a version 1 session")]
    UpdInVersion1 {
        /// The SID field.
        stream_id: StreamId,
    },
    /// Version 2: the peer sent more unread data on a stream than any window allows.
    #[error("stream {stream_id} would hold {buffered} unread bytes, beyond its window of {limit}")]
    WindowExceeded {
        /// The stream.
        stream_id: StreamId,
        /// Unread bytes the stream would hold with this frame.
        buffered: usize,
        /// The most a peer may legally have in flight.
        limit: usize,
    },
    /// Version 2: an UPD reported more bytes consumed than were ever sent (Go's `ErrConsumed`).
    #[error("UPD on stream {stream_id} reports {consumed} bytes consumed, but {sent} were sent")]
    ConsumedBeyondSent {
        /// The stream.
        stream_id: StreamId,
        /// The UPD's consumed field.
        consumed: u32,
        /// Bytes sent on the stream, wrapping.
        sent: u32,
    },
}

/// Why a session ended. Every stream of the session reports it once its buffered data is read.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The peer broke the protocol.
    #[error("protocol violation by the peer: {0}")]
    Protocol(#[from] ProtocolViolation),
    /// Nothing arrived from the peer for the keepalive timeout.
    #[error("keepalive timeout: nothing received for {0:?}")]
    KeepAliveTimeout(Duration),
    /// The peer closed the connection at a frame boundary.
    #[error("the peer closed the connection")]
    PeerClosed,
    /// The connection ended in the middle of a frame.
    #[error("the connection ended inside a frame ({received} bytes of it received)")]
    TruncatedFrame {
        /// Bytes of the incomplete frame that had arrived.
        received: usize,
    },
    /// The transport failed (reported by the driver with
    /// [`Session::handle_transport_error`](crate::Session::handle_transport_error)).
    #[error("transport error: {0}")]
    Transport(#[source] Arc<io::Error>),
    /// The session was closed by this side.
    #[error("the session was closed locally")]
    LocallyClosed,
}

impl Error {
    /// The `io::ErrorKind` that best describes this error, for adapters that surface it as an
    /// `io::Error`.
    pub fn io_kind(&self) -> io::ErrorKind {
        match self {
            Error::Protocol(_) => io::ErrorKind::InvalidData,
            Error::KeepAliveTimeout(_) => io::ErrorKind::TimedOut,
            Error::PeerClosed => io::ErrorKind::ConnectionAborted,
            Error::TruncatedFrame { .. } => io::ErrorKind::UnexpectedEof,
            Error::Transport(e) => e.kind(),
            Error::LocallyClosed => io::ErrorKind::NotConnected,
        }
    }
}

/// Why [`Session::open_stream`](crate::Session::open_stream) failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The stream id space is used up; open a new connection (Go's `ErrGoAway`).
    #[error("stream ids exhausted: go away and open a new connection")]
    GoAway,
    /// [`Config::max_streams`](crate::Config::max_streams) streams are open.
    #[error("too many open streams (limit {limit})")]
    TooManyStreams {
        /// The configured limit.
        limit: usize,
    },
    /// The session is draining ([`Session::drain`](crate::Session::drain)): no new streams.
    #[error("the session is draining: no new streams")]
    Draining,
    /// The session is closing or closed.
    #[error("session closed: {0}")]
    SessionClosed(Error),
}

/// Why a write did not take data.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// The send buffers are full; a [`StreamWritable`](crate::Event::StreamWritable) event
    /// follows when there is room again.
    #[error("send buffer full")]
    Blocked,
    /// No such stream: never opened, or already released.
    #[error("unknown stream {0}")]
    UnknownStream(StreamId),
    /// The write half was already finished (FIN queued).
    #[error("stream {0} is finished for writing")]
    Finished(StreamId),
    /// Version 2: the peer sent FIN and then granted no window for the keepalive timeout, so
    /// the queued data can never be delivered (a Go peer forgets a stream when it closes it).
    #[error("stream {0}: the peer finished the stream and stopped granting window")]
    PeerStoppedReading(StreamId),
    /// The session ended.
    #[error("session closed: {0}")]
    SessionClosed(Error),
}

/// Why a read returned no data.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// Nothing buffered yet; a [`StreamReadable`](crate::Event::StreamReadable) event follows
    /// when there is.
    #[error("no data buffered")]
    Blocked,
    /// No such stream: never opened, or already released.
    #[error("unknown stream {0}")]
    UnknownStream(StreamId),
    /// The session ended before the peer finished the stream; all data received was read.
    #[error("session closed: {0}")]
    SessionClosed(Error),
}

/// A [`Config`](crate::Config) field out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Keepalive is enabled with a zero interval.
    #[error("keep_alive_interval must be positive")]
    ZeroKeepAliveInterval,
    /// Keepalive timeout shorter than the interval.
    #[error(
        "keep_alive_timeout ({timeout:?}) must be at least keep_alive_interval ({interval:?})"
    )]
    KeepAliveTimeoutBelowInterval {
        /// The timeout.
        timeout: Duration,
        /// The interval.
        interval: Duration,
    },
    /// `max_frame_size` not in 1..=65535.
    #[error("max_frame_size {0} is not in 1..=65535")]
    MaxFrameSizeOutOfRange(usize),
    /// A size or count that must be positive is zero.
    #[error("{0} must be positive")]
    Zero(&'static str),
    /// `max_stream_buffer` does not fit Go's `int32` window arithmetic.
    #[error("max_stream_buffer {0} exceeds i32::MAX")]
    StreamBufferTooLarge(usize),
    /// `max_stream_send_buffer` above `max_send_buffer`.
    #[error("max_stream_send_buffer ({stream}) must not exceed max_send_buffer ({session})")]
    StreamSendBufferAboveSendBuffer {
        /// max_stream_send_buffer.
        stream: usize,
        /// max_send_buffer.
        session: usize,
    },
}

/// A frame that cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// A PSH payload longer than 65535 bytes.
    #[error("PSH payload of {len} bytes exceeds 65535")]
    PayloadTooLarge {
        /// The payload length.
        len: usize,
    },
    /// UPD exists only in version 2.
    #[error("UPD frames exist only in version 2")]
    UpdInVersion1,
}
