//! A kcptun client and server: each TCP connection is one smux stream over one KCP session.
//!
//! ```text
//! app --TCP--> client (--localaddr) ==smux over KCP over UDP==> server (--listen) --TCP--> --target
//! ```
//!
//! Flags are kcptun's (20210922), parsed by [`Options::parse`]; the ones this crate cannot
//! honour are refused with a message rather than ignored: `--crypt` other than `none`,
//! `--datashard`/`--parityshard` other than 0, compression (so `--nocomp` is required),
//! `--conn` other than 1, `--tcp`.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use smux_tokio::{Mux, MuxConfig, MuxStream, Version};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;

use crate::config::{KcpConfig, Mode};
use crate::{KcpListener, KcpStream};

/// Go smux's `KeepAliveTimeout` default, which kcptun keeps: a session that hears nothing for
/// this long is closed.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(30);

/// Which end of the tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Listens on TCP, dials the kcptun server over KCP.
    Client,
    /// Listens on KCP, dials the target over TCP.
    Server,
}

/// One end's settings, from kcptun's flags.
#[derive(Debug, Clone)]
pub struct Options {
    /// Client: `--localaddr` (TCP). Server: `--listen` (UDP).
    pub listen: SocketAddr,
    /// Client: `--remoteaddr` (the kcptun server, UDP). Server: `--target` (TCP).
    pub target: SocketAddr,
    /// KCP: `--mode`, `--mtu`, `--sndwnd`, `--rcvwnd`, `--nodelay`, `--interval`, `--resend`,
    /// `--nc`, `--acknodelay`, `--sockbuf`.
    pub kcp: KcpConfig,
    /// smux: `--smuxver`, `--smuxbuf`, `--streambuf`, `--keepalive`, `--keepalive-timeout`.
    pub mux: MuxConfig,
    /// `--quiet`: no line per stream.
    pub quiet: bool,
}

fn resolve(s: &str) -> Result<SocketAddr, String> {
    // kcptun accepts ":29900" for every interface.
    let s = if s.starts_with(':') {
        format!("0.0.0.0{s}")
    } else {
        s.to_string()
    };
    s.to_socket_addrs()
        .map_err(|e| format!("{s}: {e}"))?
        .next()
        .ok_or_else(|| format!("{s}: no address"))
}

fn number<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, String> {
    v.parse()
        .map_err(|_| format!("--{flag}: {v:?} is not a valid number"))
}

impl Options {
    /// Parses kcptun's flags for `role` (without the program name). Flags take `--name value`,
    /// `--name=value` or one dash, as kcptun's parser does; the defaults are kcptun's.
    pub fn parse<I, S>(role: Role, args: I) -> Result<Options, String>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let (listen, target, mut kcp) = match role {
            Role::Client => (":12948", "vps:29900", KcpConfig::client()),
            Role::Server => (":29900", "127.0.0.1:12948", KcpConfig::server()),
        };
        let (mut listen_s, mut target_s) = (listen.to_string(), target.to_string());
        let mut mux = MuxConfig::default()
            .with_keep_alive_interval(Duration::from_secs(10))
            .with_keep_alive_timeout(KEEPALIVE_TIMEOUT)
            .with_max_receive_buffer(4 * 1024 * 1024)
            .with_max_stream_buffer(2 * 1024 * 1024);
        let (mut nocomp, mut quiet) = (false, false);
        let (mut mode, mut manual) = (Mode::Fast, false);
        let mut manual_fields = (false, 30u32, 2u32, true);
        let args: Vec<String> = args.into_iter().map(Into::into).collect();
        let mut i = 0;
        while i < args.len() {
            let arg = &args[i];
            i += 1;
            let Some(name) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
                return Err(format!("unexpected argument {arg:?}"));
            };
            let (name, inline) = match name.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (name, None),
            };
            let boolean = matches!(name, "nocomp" | "quiet" | "acknodelay" | "tcp");
            let value = if boolean {
                inline.unwrap_or_else(|| "true".into())
            } else if let Some(v) = inline {
                v
            } else {
                let v = args
                    .get(i)
                    .ok_or_else(|| format!("--{name} needs a value"))?
                    .clone();
                i += 1;
                v
            };
            let yes = value == "true";
            match (role, name) {
                (Role::Client, "localaddr" | "l") | (Role::Server, "listen" | "l") => {
                    listen_s = value
                }
                (Role::Client, "remoteaddr" | "r") | (Role::Server, "target" | "t") => {
                    target_s = value
                }
                (_, "key") => {} // only a cipher would use it
                (_, "crypt") if value == "none" => {}
                (_, "crypt") => {
                    return Err(format!(
                        "--crypt {value}: only --crypt none is supported (run kcptun with --crypt none)"
                    ))
                }
                (_, "mode") if value == "manual" => manual = true,
                (_, "mode") => mode = value.parse()?,
                (_, "mtu") => kcp.mtu = number(name, &value)?,
                (_, "sndwnd") => kcp.snd_wnd = number(name, &value)?,
                (_, "rcvwnd") => kcp.rcv_wnd = number(name, &value)?,
                (_, "nodelay") => manual_fields.0 = number::<u32>(name, &value)? != 0,
                (_, "interval") => manual_fields.1 = number(name, &value)?,
                (_, "resend") => manual_fields.2 = number(name, &value)?,
                (_, "nc") => manual_fields.3 = number::<u32>(name, &value)? != 0,
                (_, "datashard" | "ds" | "parityshard" | "ps") => {
                    if number::<u32>(name, &value)? != 0 {
                        return Err(format!(
                            "--{name} {value}: FEC is not supported (run both ends with --datashard 0 --parityshard 0)"
                        ));
                    }
                }
                (_, "nocomp") => nocomp = yes,
                (_, "acknodelay") => kcp.ack_nodelay = yes,
                (_, "tcp") if yes => return Err("--tcp (raw TCP emulation) is not supported".into()),
                (_, "tcp") => {}
                (Role::Client, "conn") if value == "1" => {}
                (Role::Client, "conn") => {
                    return Err(format!("--conn {value}: only one UDP connection is supported"))
                }
                (Role::Client, "autoexpire") if value == "0" => {}
                (Role::Client, "scavengettl") => {}
                (_, "sockbuf") => kcp.sockbuf = number(name, &value)?,
                (_, "smuxver") => {
                    mux = mux.with_version(match value.as_str() {
                        "1" => Version::V1,
                        "2" => Version::V2,
                        _ => return Err(format!("--smuxver {value}: 1 or 2")),
                    })
                }
                (_, "smuxbuf") => mux = mux.with_max_receive_buffer(number(name, &value)?),
                (_, "streambuf") => mux = mux.with_max_stream_buffer(number(name, &value)?),
                (_, "keepalive") => {
                    let secs: u64 = number(name, &value)?;
                    mux = mux.with_keep_alive_interval(Duration::from_secs(secs));
                }
                // Ours, not kcptun's (Go smux's fixed 30 s there).
                (_, "keepalive-timeout") => {
                    let secs: u64 = number(name, &value)?;
                    mux = mux.with_keep_alive_timeout(Duration::from_secs(secs));
                }
                (_, "quiet") => quiet = yes,
                (_, "dscp" | "snmplog" | "snmpperiod" | "log") => {}
                _ => return Err(format!("unknown or unsupported flag --{name}")),
            }
        }
        if !nocomp {
            return Err(
                "compression (snappy) is not supported: pass --nocomp here and to kcptun".into(),
            );
        }
        kcp = kcp.with_mode(mode);
        if manual {
            (kcp.nodelay, kcp.interval, kcp.resend, kcp.no_congestion) = manual_fields;
        }
        kcp.validate()?;
        mux.validate().map_err(|e| e.to_string())?;
        Ok(Options {
            listen: resolve(&listen_s)?,
            target: resolve(&target_s)?,
            kcp,
            mux,
            quiet,
        })
    }
}

/// The client end: TCP connections in, streams of one KCP session out. The session is opened
/// on the first connection and again after it fails (as kcptun's client does).
pub struct Client {
    options: Options,
    session: Mutex<Option<Mux<KcpStream>>>,
}

impl Client {
    /// A client with `options`; nothing is sent until [`open`](Self::open).
    pub fn new(options: Options) -> Arc<Client> {
        Arc::new(Client {
            options,
            session: Mutex::new(None),
        })
    }

    async fn session(&self) -> io::Result<Mux<KcpStream>> {
        let mut session = self.session.lock().await;
        if let Some(mux) = session.as_ref().filter(|m| !m.is_closed()) {
            return Ok(mux.clone());
        }
        let kcp = KcpStream::connect(self.options.target, &self.options.kcp).await?;
        let mux = Mux::client(kcp, self.options.mux.clone()).map_err(io::Error::other)?;
        // Something must poll the mux while no stream does, for the keepalive.
        let driven = mux.clone();
        let (target, quiet) = (self.options.target, self.options.quiet);
        tokio::spawn(async move {
            match driven.drive().await {
                Ok(()) if quiet => {}
                Ok(()) => eprintln!("kcptun client: session to {target} closed"),
                Err(e) => eprintln!("kcptun client: session to {target} failed: {e}"),
            }
        });
        *session = Some(mux.clone());
        Ok(mux)
    }

    /// Opens a stream to the server (which dials its target for it), opening a KCP session
    /// first if there is none or the last one failed.
    pub async fn open(&self) -> io::Result<MuxStream<KcpStream>> {
        let mux = self.session().await?;
        match mux.connect().await {
            Ok(s) => Ok(s),
            // The session died since the check: one more try on a new one.
            Err(_) if mux.is_closed() => self.session().await?.connect().await,
            Err(e) => Err(e),
        }
    }

    /// Accepts TCP connections on `listener` forever, each one piped through a stream.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) -> io::Result<()> {
        loop {
            let (mut tcp, from) = listener.accept().await?;
            let _ = tcp.set_nodelay(true);
            let client = self.clone();
            tokio::spawn(async move {
                let mut stream = match client.open().await {
                    Ok(s) => s,
                    Err(e) => {
                        eprintln!("kcptun client: {from}: cannot open a stream: {e}");
                        return;
                    }
                };
                let id = stream.id();
                if !client.options.quiet {
                    eprintln!("kcptun client: stream {id:?} opened for {from}");
                }
                let r = tokio::io::copy_bidirectional(&mut tcp, &mut stream).await;
                if !client.options.quiet {
                    match r {
                        Ok(_) => eprintln!("kcptun client: stream {id:?} closed"),
                        Err(e) => eprintln!("kcptun client: stream {id:?} failed: {e}"),
                    }
                }
            });
        }
    }
}

/// Runs a kcptun client with `options` until its TCP listener fails.
pub async fn run_client(options: Options) -> io::Result<()> {
    let listener = TcpListener::bind(options.listen).await?;
    Client::new(options).serve(listener).await
}

/// Runs a kcptun server on `listener` until it fails: each KCP session is a smux server, each
/// stream a TCP connection to the target (half-closes passed on both ways).
pub async fn serve(mut listener: KcpListener, options: Options) -> io::Result<()> {
    loop {
        let (kcp, from) = listener.accept().await?;
        let mux = Mux::server(kcp, options.mux.clone()).map_err(io::Error::other)?;
        let (target, quiet) = (options.target, options.quiet);
        if !quiet {
            eprintln!("kcptun server: session from {from}");
        }
        tokio::spawn(async move {
            loop {
                let mut stream = match mux.accept().await {
                    Ok(s) => s,
                    Err(e) => {
                        if !quiet {
                            eprintln!("kcptun server: session from {from} ended: {e}");
                        }
                        return;
                    }
                };
                tokio::spawn(async move {
                    match TcpStream::connect(target).await {
                        Ok(mut tcp) => {
                            let _ = tcp.set_nodelay(true);
                            let _ = tokio::io::copy_bidirectional(&mut stream, &mut tcp).await;
                        }
                        // Dropping the stream closes it: the app sees its connection end.
                        Err(e) => eprintln!("kcptun server: cannot reach {target}: {e}"),
                    }
                });
            }
        });
    }
}

/// Runs a kcptun server with `options` until its UDP socket fails.
pub async fn run_server(options: Options) -> io::Result<()> {
    let listener = KcpListener::bind(options.listen, options.kcp.clone()).await?;
    serve(listener, options).await
}
