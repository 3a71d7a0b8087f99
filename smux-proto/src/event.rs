//! What a session reports to the application, and the counters it keeps.

use crate::error::Error;
use crate::stream_id::StreamId;

/// Something the application should react to, from [`Session::poll_event`](crate::Session::poll_event).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// The peer opened a stream; [`Session::accept_stream`](crate::Session::accept_stream)
    /// returns it.
    StreamOpened {
        /// The new stream.
        stream_id: StreamId,
    },
    /// Data or the peer's FIN arrived on a stream that a read found empty (or that was never
    /// read yet).
    StreamReadable {
        /// The stream.
        stream_id: StreamId,
    },
    /// A stream that a write found full (or a flush found unsent) can make progress again, or
    /// its writes will now fail.
    StreamWritable {
        /// The stream.
        stream_id: StreamId,
    },
    /// The session ended; every blocked stream operation now fails with this error (after the
    /// data already received is read). Reported once.
    Closed(Error),
}

/// Counters a user can read with [`Session::stats`](crate::Session::stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Bytes handed to the transport.
    pub bytes_out: u64,
    /// Bytes of complete frames taken from the input.
    pub bytes_in: u64,
    /// Frames queued for the transport.
    pub frames_out: u64,
    /// Frames decoded from the input.
    pub frames_in: u64,
    /// Streams opened by this side.
    pub streams_opened: u64,
    /// Streams opened by the peer and accepted by the application.
    pub streams_accepted: u64,
    /// Streams opened by the peer and refused (backlog or stream limit full, or closing).
    pub streams_refused: u64,
}
