//! KCP settings, named after kcptun's flags.

use std::str::FromStr;

/// kcptun's `--mode` profiles: `(nodelay, interval ms, resend, nc)` as kcptun 20210922 sets
/// them (its server/main.go and client/main.go).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// `normal`: 0, 40, 2, 1.
    Normal,
    /// `fast` (kcptun's default): 0, 30, 2, 1.
    #[default]
    Fast,
    /// `fast2`: 1, 20, 2, 1.
    Fast2,
    /// `fast3`: 1, 10, 2, 1.
    Fast3,
}

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "normal" => Ok(Mode::Normal),
            "fast" => Ok(Mode::Fast),
            "fast2" => Ok(Mode::Fast2),
            "fast3" => Ok(Mode::Fast3),
            other => Err(format!(
                "unknown --mode {other:?} (normal, fast, fast2, fast3)"
            )),
        }
    }
}

/// The KCP parameters of one session. Both ends should agree on `mtu` and the mode; the
/// windows are each side's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KcpConfig {
    /// `--mtu`: the largest UDP payload, kcp-go's header included (kcptun's default 1350).
    pub mtu: usize,
    /// `--sndwnd`, in segments (kcptun: 128 on the client, 1024 on the server).
    pub snd_wnd: u16,
    /// `--rcvwnd`, in segments (kcptun: 512 on the client, 1024 on the server).
    pub rcv_wnd: u16,
    /// `--nodelay`: KCP's quicker retransmission timer.
    pub nodelay: bool,
    /// `--interval`: milliseconds between KCP's flushes.
    pub interval: u32,
    /// `--resend`: fast retransmission after this many later acks (0: off).
    pub resend: u32,
    /// `--nc`: no congestion window.
    pub no_congestion: bool,
    /// Send acks as soon as a datagram is taken instead of at the next flush (kcptun's hidden
    /// `--acknodelay`, off there). On here by default: it costs a few datagrams and saves up
    /// to `interval` on every round trip.
    pub ack_nodelay: bool,
    /// After this many transmissions of one segment without an ack the session fails
    /// ([`KcpError::DeadLink`](crate::KcpError::DeadLink)); KCP's default is 20.
    pub dead_link: u32,
    /// `--sockbuf`: the UDP socket's send and receive buffers, in bytes (kcptun: 4 MiB).
    pub sockbuf: usize,
}

impl KcpConfig {
    /// kcptun's client defaults (`--mode fast --mtu 1350 --sndwnd 128 --rcvwnd 512`).
    pub fn client() -> Self {
        KcpConfig {
            snd_wnd: 128,
            rcv_wnd: 512,
            ..Self::server()
        }
    }

    /// kcptun's server defaults (`--mode fast --mtu 1350 --sndwnd 1024 --rcvwnd 1024`).
    pub fn server() -> Self {
        KcpConfig {
            mtu: 1350,
            snd_wnd: 1024,
            rcv_wnd: 1024,
            nodelay: false,
            interval: 30,
            resend: 2,
            no_congestion: true,
            ack_nodelay: true,
            dead_link: 20,
            sockbuf: 4 * 1024 * 1024,
        }
    }

    /// This config with `mode`'s nodelay, interval, resend and nc.
    #[must_use]
    pub fn with_mode(mut self, mode: Mode) -> Self {
        let (nodelay, interval) = match mode {
            Mode::Normal => (false, 40),
            Mode::Fast => (false, 30),
            Mode::Fast2 => (true, 20),
            Mode::Fast3 => (true, 10),
        };
        self.nodelay = nodelay;
        self.interval = interval;
        self.resend = 2;
        self.no_congestion = true;
        self
    }

    /// Checks the values KCP cannot run with.
    pub fn validate(&self) -> Result<(), String> {
        if !(crate::packet::HEADER_LEN + 50..=1500).contains(&self.mtu) {
            return Err(format!("--mtu {} is outside 70..=1500", self.mtu));
        }
        if self.snd_wnd == 0 || self.rcv_wnd == 0 {
            return Err("--sndwnd and --rcvwnd must be at least 1".into());
        }
        if self.interval == 0 || self.interval > 5000 {
            return Err(format!("--interval {} is outside 1..=5000", self.interval));
        }
        if self.dead_link == 0 {
            return Err("the dead-link limit must be at least 1".into());
        }
        Ok(())
    }
}

impl Default for KcpConfig {
    fn default() -> Self {
        Self::client()
    }
}
