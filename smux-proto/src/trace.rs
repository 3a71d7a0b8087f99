//! Logging through `tracing` (feature `tracing`): the macro every log line of the crate goes
//! through, and the session span. Without the feature the macro expands to nothing, its
//! arguments included, so logging costs nothing.

/// Logs an event at `$level` (`trace`, `debug`, `info`, `warn`, `error`) in the span of
/// `$session` (a `Session`, whose `span` field it borrows alone, so the other fields can be
/// borrowed meanwhile), with `tracing`'s field syntax:
/// `event!(self, debug, stream = id.as_u32(), "opened")`.
macro_rules! event {
    ($session:expr, $level:ident, $($arg:tt)+) => {{
        #[cfg(feature = "tracing")]
        {
            let span: &tracing::Span = &$session.span;
            tracing::$level!(parent: span, $($arg)+);
        }
    }};
}

pub(crate) use event;

#[cfg(feature = "tracing")]
pub(crate) fn session_span(side: crate::Side, version: crate::frame::Version) -> tracing::Span {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT_ID: AtomicU64 = AtomicU64::new(1);
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    tracing::debug_span!("smux", session = id, side = ?side, version = version.as_u8())
}
