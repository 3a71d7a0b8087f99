#![doc = include_str!("../README.md")]
//!
//! # The driving contract
//!
//! One [`Session`] is one end of one connection ([`Side::Client`] opens odd stream ids,
//! [`Side::Server`] even ones). Its methods fall into four groups:
//!
//! - **Inputs**: [`handle_input`](Session::handle_input) with the bytes the transport
//!   delivered (in any fragmentation; the call takes complete frames off the front of your
//!   buffer and leaves the rest), [`handle_eof`](Session::handle_eof) when the transport has no
//!   more, [`handle_timeout`](Session::handle_timeout) with the current time,
//!   [`handle_transport_error`](Session::handle_transport_error) when the transport fails.
//! - **Commands**: [`open_stream`](Session::open_stream),
//!   [`accept_stream`](Session::accept_stream), [`write`](Session::write) /
//!   [`write_chunk`](Session::write_chunk), [`read`](Session::read) /
//!   [`read_chunk`](Session::read_chunk), [`finish`](Session::finish) (half-close: FIN after
//!   the data written), [`release_stream`](Session::release_stream) (the handle is gone),
//!   [`close`](Session::close) (graceful).
//! - **Outputs**: [`poll_transmit`](Session::poll_transmit) then
//!   [`transmitted`](Session::transmitted) (bytes to write, as slices for vectored writes;
//!   partial writes are fine), [`poll_event`](Session::poll_event) (streams opened by the peer,
//!   readable, writable, session closed), [`poll_timeout`](Session::poll_timeout) (when to call
//!   `handle_timeout` next).
//! - **For drivers that want fewer copies** (optional):
//!   [`poll_transmit_chunks`](Session::poll_transmit_chunks) hands output over as owned chunks
//!   (to write outside whatever guards the session), and
//!   [`begin_direct_write`](Session::begin_direct_write) /
//!   [`end_direct_write`](Session::end_direct_write) frame a write straight from the caller's
//!   buffer when nothing else waits to be sent.
//! - **Getters**: [`wants_read`](Session::wants_read) (backpressure: stop reading the
//!   transport while false), [`wants_write`](Session::wants_write), [`stats`](Session::stats),
//!   [`error`](Session::error) and friends.
//!
//! After any input or command, in this order:
//! 1. write out everything [`poll_transmit`](Session::poll_transmit) gives (or as much as the
//!    transport takes now, and the rest later),
//! 2. drain [`poll_event`](Session::poll_event),
//! 3. wait until the transport is readable (if [`wants_read`](Session::wants_read)), writable
//!    (if anything is left to send), or [`poll_timeout`](Session::poll_timeout) passes,
//!    whichever comes first.
//!
//! Errors from the peer are fatal and sticky: the session ends with a typed [`Error`], every
//! later call reports it, and you close the transport. Data already received stays readable.
//!
//! # Guarantees
//!
//! - Memory is bounded by the [`Config`] whatever the peer sends: unread data by
//!   `max_receive_buffer` (v1: plus one frame; v2: the windows granted are carved out of it,
//!   plus a [`RECEIVE_WINDOW_FLOOR`] per stream, the 256 KiB initial window of new streams
//!   the peer may use before our first UPD reaches it, and the room for replies: what we sent
//!   on a stream and have not read back, up to `max_stream_buffer`), unsent data by `max_send_buffer`,
//!   streams by `max_streams`, unaccepted streams by `accept_backlog` (and, in v2, their data
//!   by `max_receive_buffer`), queued control frames by a fixed limit. Beyond a limit,
//!   [`wants_read`](Session::wants_read) pauses input and [`input_pause`](Session::input_pause)
//!   says why.
//! - Nothing is dropped silently: a peer's stream is refused (FIN, counted in
//!   [`Stats::streams_refused`]) only at `max_streams`; a full accept backlog pauses input.
//! - Version 2 never pauses input for the receive budget while the peer respects our windows,
//!   so window updates are always read: two peers echoing on many streams cannot deadlock on
//!   each other's buffers.
//! - No input makes the session panic; invalid input ends it with [`ProtocolViolation`].
//! - Data of one stream is never reordered, and its FIN follows its data. Control frames are
//!   never queued behind more than a few hundred KiB of data.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(unreachable_pub)]

mod config;
mod credit;
mod early_fins;
mod error;
mod event;
pub mod frame;
mod id_hash;
pub mod manual;
mod outbox;
mod path;
mod schedule;
mod session;
mod snapshot;
mod stream;
mod stream_id;
mod trace;
mod window;

#[cfg(test)]
mod tests;

pub use config::{
    Config, DEFAULT_ACCEPT_BACKLOG, DEFAULT_EARLY_REPLY_HOLD, DEFAULT_KEEP_ALIVE_INTERVAL,
    DEFAULT_KEEP_ALIVE_TIMEOUT, DEFAULT_MAX_FRAME_SIZE, DEFAULT_MAX_RECEIVE_BUFFER,
    DEFAULT_MAX_SEND_BUFFER, DEFAULT_MAX_STREAMS, DEFAULT_MAX_STREAM_BUFFER,
    DEFAULT_MAX_STREAM_SEND_BUFFER,
};
pub use credit::{BUSY_FLOOR as BUSY_RECEIVE_WINDOW_FLOOR, FLOOR as RECEIVE_WINDOW_FLOOR};
pub use error::{
    ConfigError, EncodeError, Error, OpenError, ProtocolViolation, ReadError, WriteError,
};
pub use event::{Event, Stats};
pub use frame::{Cmd, Frame, FrameDecoder, Header, Version};
pub use id_hash::{IdHasher, RandomIdState};
pub use outbox::advance_chunks;
pub use session::direct::{DirectWrite, DIRECT_FRAMES};
pub use session::Session;
pub use snapshot::{InputPause, ReceiveWindowSnapshot, SessionSnapshot, StreamSnapshot};
pub use stream_id::{Side, StreamId};
pub use window::INITIAL_PEER_WINDOW;
