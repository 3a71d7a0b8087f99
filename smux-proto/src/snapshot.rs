//! A picture of a session's state, for debugging stalls: who holds which buffers, which windows
//! are open, and whether input is paused and why.
//!
//! [`Session::snapshot`](crate::Session::snapshot) walks every stream (O(streams)); the cheap
//! one-line answers are [`Session::input_pause`](crate::Session::input_pause),
//! [`Session::buffered_input`](crate::Session::buffered_input) and friends.

use std::fmt;

use crate::error::Error;
use crate::event::Stats;
use crate::frame::Version;
use crate::stream_id::{Side, StreamId};

/// Why a session does not want input now ([`Session::wants_read`](crate::Session::wants_read)
/// is false).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InputPause {
    /// Version 1: unread data of all streams fills `max_receive_buffer`; input resumes when the
    /// application reads. (Version 2 never pauses for this: the peer's windows bound it.)
    ReceiveBudget,
    /// `accept_backlog` streams wait to be accepted; input resumes when the application
    /// accepts one.
    AcceptBacklog,
    /// Too many control frames wait for the transport (the peer does not read what we send);
    /// input resumes when the transport takes them.
    ControlQueue,
    /// The session has ended.
    Closed,
}

impl fmt::Display for InputPause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InputPause::ReceiveBudget => "receive budget full (the application is not reading)",
            InputPause::AcceptBacklog => "accept backlog full (the application is not accepting)",
            InputPause::ControlQueue => "control frames not taken by the transport",
            InputPause::Closed => "session ended",
        })
    }
}

/// The state of one session, from [`Session::snapshot`](crate::Session::snapshot).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SessionSnapshot {
    /// Which end.
    pub side: Side,
    /// Protocol version.
    pub version: Version,
    /// Why input is paused, if it is.
    pub input_pause: Option<InputPause>,
    /// `close` was called or the session ended.
    pub closing: bool,
    /// `drain` was called.
    pub draining: bool,
    /// Why the session ended, once it has.
    pub error: Option<Error>,
    /// Unread bytes, all streams.
    pub buffered_input: usize,
    /// Written and not yet framed bytes, all streams.
    pub buffered_output: usize,
    /// Version 2: receive budget promised to the peer (unread bytes plus what the peer may still
    /// send under the windows we granted), all streams. At most `max_receive_buffer` plus a
    /// small floor per stream, except for what new streams' initial windows force on us.
    pub receive_credit: u64,
    /// Streams opened by the peer and not accepted yet.
    pub accept_backlog: usize,
    /// Control frames waiting to be framed.
    pub queued_control: usize,
    /// Bytes framed and not yet handed to the transport.
    pub queued_transmit: usize,
    /// Version 2: the round-trip time the receive windows are sized for
    /// ([`Session::round_trip`](crate::Session::round_trip)).
    pub round_trip: Option<std::time::Duration>,
    /// Counters.
    pub stats: Stats,
    /// Every stream the session tracks, by id.
    pub streams: Vec<StreamSnapshot>,
}

/// The state of one stream, part of a [`SessionSnapshot`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamSnapshot {
    /// The stream.
    pub id: StreamId,
    /// Unread bytes.
    pub buffered_input: usize,
    /// Written and not yet framed bytes.
    pub buffered_output: usize,
    /// Version 2: the receive window as granted to the peer.
    pub receive_window: Option<ReceiveWindowSnapshot>,
    /// Version 2: what the peer's window lets this stream send now.
    pub send_window_available: Option<usize>,
    /// Waiting in the accept backlog.
    pub unaccepted: bool,
    /// The peer's FIN arrived.
    pub fin_received: bool,
    /// This side finished writing (FIN queued or sent).
    pub finished: bool,
    /// The FIN was handed to the transport.
    pub fin_transmitted: bool,
    /// The application gave the stream up (only its unsent data remains).
    pub released: bool,
    /// A read found nothing and waits for data.
    pub read_blocked: bool,
    /// A write found no room and waits.
    pub write_blocked: bool,
    /// Version 2: the peer finished the stream and our window is shut; writes fail at a deadline.
    pub send_stalled: bool,
    /// Opened by the peer, which has sent nothing on it yet: what is written waits, at most
    /// [`Config::early_reply_hold`](crate::Config::early_reply_hold).
    pub reply_held: bool,
}

/// Version 2 receive-side flow control of one stream, in bytes since the stream opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReceiveWindowSnapshot {
    /// Received from the peer.
    pub received: u64,
    /// Read by the application (or dropped after it released the stream).
    pub consumed: u64,
    /// Where we asked the peer to stop: the consumed count of our latest window update plus its
    /// window.
    pub granted: u64,
    /// The window of our latest update (the initial window until the first one).
    pub window: u64,
}
