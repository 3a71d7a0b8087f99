//! The `tracing` feature: every event lands in the span of its session, and the events a
//! user debugging a stall looks for are there. Runs with `--features tracing` (the test script
//! does); without the feature this file is empty.
#![cfg(feature = "tracing")]

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use smux_tokio::{Mux, MuxConfig, Version};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// One event: its level, message, fields, and the fields of its span.
#[derive(Debug, Clone)]
struct Logged {
    level: tracing::Level,
    message: String,
    fields: HashMap<String, String>,
    span: Option<HashMap<String, String>>,
}

/// Keeps every span's fields and every event.
#[derive(Default, Clone)]
struct Collector {
    next: Arc<AtomicU64>,
    spans: Arc<Mutex<HashMap<u64, HashMap<String, String>>>>,
    events: Arc<Mutex<Vec<Logged>>>,
}

#[derive(Default)]
struct Fields(HashMap<String, String>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.0.insert(
            field.name().to_owned(),
            format!("{value:?}").replace('"', ""),
        );
    }
}

impl Subscriber for Collector {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let mut fields = Fields::default();
        span.record(&mut fields);
        fields
            .0
            .insert("name".to_owned(), span.metadata().name().to_owned());
        self.spans.lock().unwrap().insert(id, fields.0);
        Id::from_u64(id)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let message = fields.0.remove("message").unwrap_or_default();
        let span = event
            .parent()
            .and_then(|id| self.spans.lock().unwrap().get(&id.into_u64()).cloned());
        self.events.lock().unwrap().push(Logged {
            level: *event.metadata().level(),
            message,
            fields: fields.0,
            span,
        });
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

impl Collector {
    fn find(&self, message: &str) -> Vec<Logged> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.message.contains(message))
            .cloned()
            .collect()
    }
}

/// Runs `body` on a current-thread runtime (so every poll sees the collector) with paused
/// time off.
fn traced<F: std::future::Future<Output = ()>>(body: impl FnOnce() -> F) -> Collector {
    let collector = Collector::default();
    let _guard = tracing::subscriber::set_default(collector.clone());
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(body());
    collector
}

async fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (a, b) = tokio::join!(TcpStream::connect(addr), listener.accept());
    (a.unwrap(), b.unwrap().0)
}

#[test]
fn stream_lifecycle_and_refusals_are_logged_in_the_session_span() {
    let log = traced(|| async {
        let (a, b) = tcp_pair().await;
        let config = MuxConfig::default().with_version(Version::V2);
        let client = Mux::client(a, config.clone()).unwrap();
        let server = Mux::server(b, config).unwrap();
        let mut s = client.connect().await.unwrap();
        s.write_all(b"hi").await.unwrap();
        s.shutdown().await.unwrap();
        let mut t = server.accept().await.unwrap();
        let mut got = Vec::new();
        t.read_to_end(&mut got).await.unwrap();
        // `t` stays open: the drain waits for it.
        let drain = tokio::spawn({
            let server = server.clone();
            async move { server.drain(Duration::from_secs(5)).await }
        });
        tokio::task::yield_now().await;
        while !server.snapshot().draining {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let mut late = client.connect().await.unwrap();
        let mut buf = Vec::new();
        late.read_to_end(&mut buf).await.unwrap();
        drop((s, t, late));
        drain.await.unwrap().unwrap();
    });
    let opened = log.find("stream opened");
    assert!(!opened.is_empty(), "no 'stream opened'");
    for event in log.events.lock().unwrap().iter() {
        let span = event
            .span
            .as_ref()
            .unwrap_or_else(|| panic!("event outside a session span: {event:?}"));
        assert_eq!(span["name"], "smux");
        assert!(span.contains_key("session") && span.contains_key("side"));
    }
    let sides: Vec<String> = opened
        .iter()
        .map(|e| e.span.as_ref().unwrap()["side"].clone())
        .collect();
    assert!(sides.contains(&"Client".to_owned()), "{sides:?}");
    assert!(!log.find("stream opened by the peer").is_empty());
    assert!(!log.find("stream accepted").is_empty());
    assert!(!log.find("stream closed").is_empty());
    assert!(!log.find("draining").is_empty());
    let refused = log.find("refused");
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0].fields["reason"], "draining");
    assert_eq!(refused[0].level, tracing::Level::INFO);
}

#[test]
fn protocol_violations_and_keepalive_timeouts_are_warnings() {
    let log = traced(|| async {
        let (mut raw, b) = tcp_pair().await;
        let server = Mux::server(b, MuxConfig::default()).unwrap();
        raw.write_all(&[9, 0, 0, 0, 3, 0, 0, 0]).await.unwrap(); // version 9
        assert!(server.accept().await.is_err());

        let (_silent, b) = tcp_pair().await;
        let config = MuxConfig::default()
            .with_keep_alive_interval(Duration::from_millis(20))
            .with_keep_alive_timeout(Duration::from_millis(100));
        let server = Mux::server(b, config).unwrap();
        assert!(server.drive().await.is_err());
    });
    let violation = log.find("protocol violation");
    assert_eq!(violation.len(), 1, "{:?}", log.events.lock().unwrap());
    assert_eq!(violation[0].level, tracing::Level::WARN);
    assert!(
        violation[0].fields["error"].contains("version"),
        "{violation:?}"
    );
    let timeout = log.find("keepalive timeout");
    assert_eq!(timeout.len(), 1);
    assert_eq!(timeout[0].level, tracing::Level::WARN);
}
