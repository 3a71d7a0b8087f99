//! Session configuration, with Go smux's defaults and validation rules.

use std::time::Duration;

use crate::error::ConfigError;
use crate::frame::{Version, MAX_PAYLOAD_LEN};

/// Go's `DefaultConfig().KeepAliveInterval`.
pub const DEFAULT_KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// Go's `DefaultConfig().KeepAliveTimeout`.
pub const DEFAULT_KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(30);
/// Go's `DefaultConfig().MaxFrameSize`.
pub const DEFAULT_MAX_FRAME_SIZE: usize = 32 * 1024;
/// Go's `DefaultConfig().MaxReceiveBuffer`.
pub const DEFAULT_MAX_RECEIVE_BUFFER: usize = 4 * 1024 * 1024;
/// 4 MiB (the whole default receive budget), where Go's `DefaultConfig().MaxStreamBuffer` is
/// 64 KiB: it caps the window of one stream, which otherwise gets a fair share of
/// `max_receive_buffer` (all of it when it is the only busy stream). With a 64 KiB window a v2
/// stream waits for an UPD every 32 KiB, and one stream over loopback moves a third as much
/// (measured with `benches/benches/e2e.rs`).
pub const DEFAULT_MAX_STREAM_BUFFER: usize = 4 * 1024 * 1024;
/// Go pauses its input once 1024 streams wait to be accepted (`defaultAcceptBacklog`); we pause
/// at 8192. An unaccepted stream costs a few hundred bytes plus the data it received (which
/// counts against the receive budget), and a larger backlog spares an application that accepts
/// streams one at a time the pause (while input is paused, data for the streams it already
/// accepted waits behind the unaccepted ones).
pub const DEFAULT_ACCEPT_BACKLOG: usize = 8192;
/// Default limit on streams open at once, both directions together. Go has none.
pub const DEFAULT_MAX_STREAMS: usize = 65_536;
/// Default bound on data written by the application and not yet framed, whole session.
pub const DEFAULT_MAX_SEND_BUFFER: usize = 4 * 1024 * 1024;
/// Default bound on data written by the application and not yet framed, per stream.
pub const DEFAULT_MAX_STREAM_SEND_BUFFER: usize = 256 * 1024;
/// Default [`Config::early_reply_hold`].
pub const DEFAULT_EARLY_REPLY_HOLD: Duration = Duration::from_millis(20);

/// How a session behaves. Start from [`Config::default`] (Go's defaults) and change what you
/// need with the `with_*` methods (or by assigning fields); [`Config::validate`] is checked
/// when a session is created. The struct is `#[non_exhaustive]`: new settings can come in a
/// minor release without breaking your code.
///
/// ```
/// use std::time::Duration;
/// use smux_proto::{Config, Version};
///
/// let config = Config::default()
///     .with_version(Version::V2)
///     .with_keep_alive_interval(Duration::from_secs(5));
/// assert!(config.validate().is_ok());
///
/// let mut config = config;
/// config.max_streams = 1024;
/// assert!(config.validate().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Protocol version; both ends must agree. Default: [`Version::V1`].
    pub version: Version,
    /// Turns keepalive off: no NOP is sent and silence never times out. Default: `false`.
    pub keep_alive_disabled: bool,
    /// How often a NOP is sent. Default: 10 s.
    pub keep_alive_interval: Duration,
    /// The session fails when nothing at all arrived for this long. Default: 30 s.
    pub keep_alive_timeout: Duration,
    /// The largest PSH payload this side sends, 1..=65535. Default: 32768. Any size up to 65535
    /// is accepted from the peer.
    pub max_frame_size: usize,
    /// The receive budget: bytes received and not yet read, all streams together. Default:
    /// 4 MiB.
    ///
    /// Version 1 has no flow control: once the budget is used up the session stops reading
    /// input ([`Session::wants_read`](crate::Session::wants_read)) until the application reads.
    /// Version 2 carves every stream's window out of it instead (see
    /// [`max_stream_buffer`](Self::max_stream_buffer)), so input never pauses for it.
    pub max_receive_buffer: usize,
    /// Version 2: the widest window one stream is granted. Each stream's window is its fair
    /// share of [`max_receive_buffer`](Self::max_receive_buffer) (the budget divided among the
    /// streams that are busy receiving), up to this, and never below
    /// [`RECEIVE_WINDOW_FLOOR`](crate::RECEIVE_WINDOW_FLOOR) (16 KiB, or this if smaller).
    /// A value above `max_receive_buffer` is allowed and means "no cap below the budget".
    /// It also caps a stream's room for replies (never below 256 KiB): its window always
    /// covers what this side sent on it and has not read back, so a peer that stops reading
    /// its input (Go does when its buffer is full) can still answer everything it holds.
    /// Default: 4 MiB (Go: a fixed 64 KiB window per stream).
    pub max_stream_buffer: usize,
    /// Bytes written and not yet framed, all streams together. Default: 4 MiB.
    pub max_send_buffer: usize,
    /// Bytes written and not yet framed, per stream. Default: 256 KiB.
    pub max_stream_send_buffer: usize,
    /// Streams opened by the peer and not yet accepted. When this many wait, the session stops
    /// reading input until the application accepts one (as Go does): nothing is refused or
    /// lost. Default: 8192 (Go: 1024).
    pub accept_backlog: usize,
    /// Streams open at once, both directions; a SYN beyond it is refused with FIN (sent once
    /// more if the peer may have missed it, see [`Session::drain`](crate::Session::drain))
    /// and [`Session::open_stream`](crate::Session::open_stream) fails. Default: 65536.
    pub max_streams: usize,
    /// How long data and FIN written on a stream the peer just opened wait while the peer has
    /// sent nothing on it, for a Go peer's sake; zero turns the wait off. Default: 20 ms.
    ///
    /// Go's smux puts a stream it opens in its table only after its SYN is written, and drops
    /// the data and FIN that arrive for a stream not in it. A reply sent as soon as the SYN
    /// arrives (a server that speaks first: SSH, SMTP, a greeting) can beat it, most of all
    /// in a burst of opens: against Go 1.5.16 opening 3,000 streams at once, a server that
    /// greeted each at once lost 0.1 % to 14 % of the greetings. Anything the peer sends on the
    /// stream (data, FIN, a window update) proves it registered and ends the wait, so a
    /// stream whose peer speaks first (HTTP, TLS, an echo) is never held. Set it to zero
    /// when the peer is known not to have the race (this crate's own sessions register a
    /// stream before its SYN is queued).
    pub early_reply_hold: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            version: Version::V1,
            keep_alive_disabled: false,
            keep_alive_interval: DEFAULT_KEEP_ALIVE_INTERVAL,
            keep_alive_timeout: DEFAULT_KEEP_ALIVE_TIMEOUT,
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            max_receive_buffer: DEFAULT_MAX_RECEIVE_BUFFER,
            max_stream_buffer: DEFAULT_MAX_STREAM_BUFFER,
            max_send_buffer: DEFAULT_MAX_SEND_BUFFER,
            max_stream_send_buffer: DEFAULT_MAX_STREAM_SEND_BUFFER,
            accept_backlog: DEFAULT_ACCEPT_BACKLOG,
            max_streams: DEFAULT_MAX_STREAMS,
            early_reply_hold: DEFAULT_EARLY_REPLY_HOLD,
        }
    }
}

/// `with_<field>` setters, one per field, each documented by its field.
macro_rules! with_setters {
    ($($field:ident: $ty:ty => $with:ident;)*) => {
        impl Config {
            $(
                #[doc = concat!("This config with [`", stringify!($field), "`](Self::", stringify!($field), ") set to `value`.")]
                #[must_use]
                pub fn $with(mut self, value: $ty) -> Self {
                    self.$field = value;
                    self
                }
            )*
        }
    };
}

with_setters! {
    version: Version => with_version;
    keep_alive_disabled: bool => with_keep_alive_disabled;
    keep_alive_interval: Duration => with_keep_alive_interval;
    keep_alive_timeout: Duration => with_keep_alive_timeout;
    max_frame_size: usize => with_max_frame_size;
    max_receive_buffer: usize => with_max_receive_buffer;
    max_stream_buffer: usize => with_max_stream_buffer;
    max_send_buffer: usize => with_max_send_buffer;
    max_stream_send_buffer: usize => with_max_stream_send_buffer;
    accept_backlog: usize => with_accept_backlog;
    max_streams: usize => with_max_streams;
    early_reply_hold: Duration => with_early_reply_hold;
}

impl Config {
    /// Checks the rules of Go's `VerifyConfig`, plus this crate's own limits.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.keep_alive_disabled {
            if self.keep_alive_interval.is_zero() {
                return Err(ConfigError::ZeroKeepAliveInterval);
            }
            if self.keep_alive_timeout < self.keep_alive_interval {
                return Err(ConfigError::KeepAliveTimeoutBelowInterval {
                    timeout: self.keep_alive_timeout,
                    interval: self.keep_alive_interval,
                });
            }
        }
        if self.max_frame_size == 0 || self.max_frame_size > MAX_PAYLOAD_LEN {
            return Err(ConfigError::MaxFrameSizeOutOfRange(self.max_frame_size));
        }
        if self.max_receive_buffer == 0 {
            return Err(ConfigError::Zero("max_receive_buffer"));
        }
        if self.max_stream_buffer == 0 {
            return Err(ConfigError::Zero("max_stream_buffer"));
        }
        if self.max_stream_buffer > i32::MAX as usize {
            return Err(ConfigError::StreamBufferTooLarge(self.max_stream_buffer));
        }
        if self.max_send_buffer == 0 {
            return Err(ConfigError::Zero("max_send_buffer"));
        }
        if self.max_stream_send_buffer == 0 {
            return Err(ConfigError::Zero("max_stream_send_buffer"));
        }
        if self.max_stream_send_buffer > self.max_send_buffer {
            return Err(ConfigError::StreamSendBufferAboveSendBuffer {
                stream: self.max_stream_send_buffer,
                session: self.max_send_buffer,
            });
        }
        if self.accept_backlog == 0 {
            return Err(ConfigError::Zero("accept_backlog"));
        }
        if self.max_streams == 0 {
            return Err(ConfigError::Zero("max_streams"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_gos_but_the_window_and_valid() {
        let c = Config::default();
        assert_eq!(c.version, Version::V1);
        assert!(!c.keep_alive_disabled);
        assert_eq!(c.keep_alive_interval, Duration::from_secs(10));
        assert_eq!(c.keep_alive_timeout, Duration::from_secs(30));
        assert_eq!(c.max_frame_size, 32768);
        assert_eq!(c.max_receive_buffer, 4_194_304);
        assert_eq!(c.max_stream_buffer, 4_194_304, "Go: 65536");
        assert_eq!(c.accept_backlog, 8192, "Go: 1024");
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn keep_alive_rules_apply_only_when_enabled() {
        let c = Config {
            keep_alive_interval: Duration::ZERO,
            ..Config::default()
        };
        assert_eq!(c.validate(), Err(ConfigError::ZeroKeepAliveInterval));
        let c = Config {
            keep_alive_timeout: Duration::from_secs(5),
            ..Config::default()
        };
        assert!(matches!(
            c.validate(),
            Err(ConfigError::KeepAliveTimeoutBelowInterval { .. })
        ));
        let c = Config {
            keep_alive_disabled: true,
            keep_alive_interval: Duration::ZERO,
            keep_alive_timeout: Duration::ZERO,
            ..Config::default()
        };
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn frame_size_must_fit_in_the_length_field() {
        for bad in [0, 65_536] {
            let c = Config {
                max_frame_size: bad,
                ..Config::default()
            };
            assert_eq!(c.validate(), Err(ConfigError::MaxFrameSizeOutOfRange(bad)));
        }
        let c = Config {
            max_frame_size: 65_535,
            ..Config::default()
        };
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn buffers_must_be_positive_and_nested() {
        let c = Config {
            max_receive_buffer: 0,
            ..Config::default()
        };
        assert_eq!(c.validate(), Err(ConfigError::Zero("max_receive_buffer")));
        let c = Config {
            max_stream_buffer: 0,
            ..Config::default()
        };
        assert_eq!(c.validate(), Err(ConfigError::Zero("max_stream_buffer")));
        // A stream window above the budget is allowed: the budget caps it.
        let c = Config {
            max_receive_buffer: 1024 * 1024,
            ..Config::default()
        };
        assert_eq!(c.validate(), Ok(()));
        let c = Config {
            max_receive_buffer: usize::MAX,
            max_stream_buffer: 1 << 31,
            ..Config::default()
        };
        assert_eq!(
            c.validate(),
            Err(ConfigError::StreamBufferTooLarge(1 << 31))
        );
        let c = Config {
            max_stream_send_buffer: 8 * 1024 * 1024,
            ..Config::default()
        };
        assert!(matches!(
            c.validate(),
            Err(ConfigError::StreamSendBufferAboveSendBuffer { .. })
        ));
        let c = Config {
            max_streams: 0,
            ..Config::default()
        };
        assert_eq!(c.validate(), Err(ConfigError::Zero("max_streams")));
        let c = Config {
            accept_backlog: 0,
            ..Config::default()
        };
        assert_eq!(c.validate(), Err(ConfigError::Zero("accept_backlog")));
    }
}
