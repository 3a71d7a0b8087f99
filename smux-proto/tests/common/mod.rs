//! Checks shared by the property tests of the session (`session_props.rs`) and of its
//! version 2 windows (`credit_props.rs`): each is a rule the wire must show, applied to what
//! the test decoded from a side's output.

use std::fmt::Display;

use proptest::test_runner::TestCaseError;
use smux_proto::{StreamId, INITIAL_PEER_WINDOW};

/// A property test step: `Err` fails the case with its message.
pub type R<T = ()> = Result<T, TestCaseError>;

/// Fails the case with `msg`.
pub fn fail<T>(msg: String) -> R<T> {
    Err(TestCaseError::fail(msg))
}

/// The most room for replies one stream keeps, for a `max_stream_buffer`.
pub fn reply_cap(max_stream_buffer: usize) -> u32 {
    (max_stream_buffer as u32).max(INITIAL_PEER_WINDOW)
}

/// Room for replies: when `side` has sent `data_sent` payload bytes on `stream_id` (this
/// PSH included), the latest UPD it sent before (`upd_sent`: consumed, window) lets the peer
/// answer all of it, up to `reply_cap` beyond what was consumed, however long the peer then
/// pauses its input.
pub fn check_reply_room(
    side: impl Display,
    stream_id: StreamId,
    data_sent: usize,
    upd_sent: Option<(u32, u32)>,
    reply_cap: u32,
) -> R {
    let (consumed, window) = upd_sent.unwrap_or((0, INITIAL_PEER_WINDOW));
    let granted = u64::from(consumed) + u64::from(window);
    let needed = (data_sent as u64).min(u64::from(consumed) + u64::from(reply_cap));
    if granted < needed {
        return fail(format!(
            "{side} sent {data_sent} bytes on {stream_id} before granting room to answer them \
             ({granted} granted)"
        ));
    }
    Ok(())
}

/// Go's rule, as the sender knew it when it made the frame: bytes in flight on `stream_id`
/// (`data_sent` less the peer's last `consumed`, wrapping) at most the window of the latest
/// UPD `side` processed (`upd_seen`; 256 KiB before any).
pub fn check_go_window(
    side: impl Display,
    stream_id: StreamId,
    data_sent: usize,
    upd_seen: Option<(u32, u32)>,
) -> R {
    let (consumed, window) = upd_seen.unwrap_or((0, INITIAL_PEER_WINDOW));
    let inflight = (data_sent as u32).wrapping_sub(consumed) as i32;
    if i64::from(inflight) > i64::from(window as i32) {
        return fail(format!(
            "{side} has {inflight} bytes in flight on {stream_id}, beyond the window {window} \
             it knew"
        ));
    }
    Ok(())
}
