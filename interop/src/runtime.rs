//! The async runtimes the Rust-side tests run on, each with its smux adapter: one
//! [`Runtime`] trait, implemented by [`Tokio`] (`smux-tokio` on a two-worker runtime) and
//! [`Smol`] (`smux-smol` on an executor with two workers). The test files add the view of
//! streams and sockets they need (through `futures::io` or tokio's traits) on top.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use smux_proto::{Config, SessionSnapshot, Side, Stats};

/// An async runtime and the mux of its smux adapter over TCP.
pub trait Runtime: Sized + 'static {
    /// For messages.
    const NAME: &'static str;
    /// The adapter's mux over the runtime's TCP stream.
    type Mux: Clone + Send + Sync + 'static;

    /// Runs `future` to completion on a fresh runtime of this kind.
    fn block_on<F: Future>(future: F) -> F::Output;
    /// Spawns a task; the returned future gives its output (and re-raises its panic).
    fn spawn<F>(future: F) -> BoxFuture<'static, F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static;
    /// Spawns a task that runs on its own (it ends with the runtime).
    fn detach<F>(future: F)
    where
        F: Future<Output = ()> + Send + 'static;
    /// Waits for `duration`.
    fn sleep(duration: Duration) -> BoxFuture<'static, ()>;
    /// Runs blocking code on a thread pool.
    fn unblock<R, F>(f: F) -> BoxFuture<'static, R>
    where
        R: Send + 'static,
        F: FnOnce() -> R + Send + 'static;
    /// A mux over a connected std TCP socket (called on the runtime), with `TCP_NODELAY`.
    fn new_mux(tcp: std::net::TcpStream, side: Side, config: Config) -> Self::Mux;
    /// Closes the mux gracefully.
    fn close(mux: &Self::Mux) -> BoxFuture<'static, io::Result<()>>;
    /// Drains the mux (`Mux::drain`): returns when the connection has ended.
    fn drain(mux: &Self::Mux, timeout: Duration) -> BoxFuture<'static, io::Result<()>>;
    /// The session's counters.
    fn stats(mux: &Self::Mux) -> Stats;
    /// The session's state, for stall reports.
    fn snapshot(mux: &Self::Mux) -> SessionSnapshot;
    /// Whether the session has ended.
    fn is_closed(mux: &Self::Mux) -> bool;
}

/// The `Runtime` methods that only call the adapter's mux (the same names on both adapters,
/// and on the workload matrix's TLS runtime). Paths are spelled out so that it expands
/// anywhere that depends on `futures` and `smux-proto`.
#[macro_export]
macro_rules! mux_methods {
    () => {
        fn close(mux: &Self::Mux) -> ::futures::future::BoxFuture<'static, ::std::io::Result<()>> {
            let mux = mux.clone();
            Box::pin(async move { mux.close().await })
        }

        fn drain(
            mux: &Self::Mux,
            timeout: ::std::time::Duration,
        ) -> ::futures::future::BoxFuture<'static, ::std::io::Result<()>> {
            let mux = mux.clone();
            Box::pin(async move { mux.drain(timeout).await })
        }

        fn stats(mux: &Self::Mux) -> ::smux_proto::Stats {
            mux.stats()
        }

        fn snapshot(mux: &Self::Mux) -> ::smux_proto::SessionSnapshot {
            mux.snapshot()
        }

        fn is_closed(mux: &Self::Mux) -> bool {
            mux.is_closed()
        }
    };
}

/// Re-raises the panic of a task that panicked.
fn task_output<T>(result: Result<T, tokio::task::JoinError>) -> T {
    match result {
        Ok(output) => output,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("task failed: {e}"),
    }
}

/// smux-tokio on a multi-thread runtime with two workers.
pub struct Tokio;

impl Runtime for Tokio {
    const NAME: &'static str = "tokio";
    type Mux = smux_tokio::Mux<tokio::net::TcpStream>;

    fn block_on<F: Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
            .block_on(future)
    }

    fn spawn<F>(future: F) -> BoxFuture<'static, F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let handle = tokio::spawn(future);
        Box::pin(async move { task_output(handle.await) })
    }

    fn detach<F>(future: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        drop(tokio::spawn(future));
    }

    fn sleep(duration: Duration) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(duration))
    }

    fn unblock<R, F>(f: F) -> BoxFuture<'static, R>
    where
        R: Send + 'static,
        F: FnOnce() -> R + Send + 'static,
    {
        let handle = tokio::task::spawn_blocking(f);
        Box::pin(async move { task_output(handle.await) })
    }

    fn new_mux(tcp: std::net::TcpStream, side: Side, config: Config) -> Self::Mux {
        tcp.set_nonblocking(true).unwrap();
        tcp.set_nodelay(true).unwrap();
        let tcp = tokio::net::TcpStream::from_std(tcp).unwrap();
        smux_tokio::Mux::new(tcp, side, config).unwrap()
    }

    mux_methods!();
}

/// smux-smol on smol: each [`block_on`](Runtime::block_on) has an executor of its own, run by
/// the calling thread and two workers (smol's global executor has a single thread shared by
/// every test of the process, where a busy test could starve another one's keepalive).
pub struct Smol;

thread_local! {
    /// The executor of the test this thread works for.
    static SMOL_EXECUTOR: RefCell<Option<Arc<smol::Executor<'static>>>> = const { RefCell::new(None) };
}

/// Clears the thread's executor when the test ends, also when it panics (dropping the
/// executor drops the tasks a failed test left behind).
struct ClearExecutor;

impl Drop for ClearExecutor {
    fn drop(&mut self) {
        let executor = SMOL_EXECUTOR.with(|cell| cell.borrow_mut().take());
        drop(executor);
    }
}

fn smol_executor() -> Arc<smol::Executor<'static>> {
    SMOL_EXECUTOR
        .with(|cell| cell.borrow().clone())
        .expect("spawn outside of a test's executor")
}

impl Runtime for Smol {
    const NAME: &'static str = "smol";
    type Mux = smux_smol::Mux<smol::net::TcpStream>;

    fn block_on<F: Future>(future: F) -> F::Output {
        let executor = Arc::new(smol::Executor::new());
        let set = |executor: &Arc<smol::Executor<'static>>| {
            SMOL_EXECUTOR.with(|cell| *cell.borrow_mut() = Some(executor.clone()));
        };
        let (stop, stopped) = smol::channel::bounded::<()>(1);
        std::thread::scope(|scope| {
            for _ in 0..2 {
                let executor = executor.clone();
                let stopped = stopped.clone();
                scope.spawn(move || {
                    set(&executor);
                    let _clear = ClearExecutor;
                    // Runs tasks until `stop` is dropped (also when the test panics).
                    let _ = smol::block_on(executor.run(stopped.recv()));
                });
            }
            let _stop = stop;
            set(&executor);
            let _clear = ClearExecutor;
            smol::block_on(executor.run(future))
        })
    }

    fn spawn<F>(future: F) -> BoxFuture<'static, F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        Box::pin(smol_executor().spawn(future))
    }

    fn detach<F>(future: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        smol_executor().spawn(future).detach();
    }

    fn sleep(duration: Duration) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            smol::Timer::after(duration).await;
        })
    }

    fn unblock<R, F>(f: F) -> BoxFuture<'static, R>
    where
        R: Send + 'static,
        F: FnOnce() -> R + Send + 'static,
    {
        Box::pin(smol::unblock(f))
    }

    fn new_mux(tcp: std::net::TcpStream, side: Side, config: Config) -> Self::Mux {
        tcp.set_nodelay(true).unwrap();
        let tcp = smol::net::TcpStream::try_from(tcp).unwrap();
        match side {
            Side::Client => smux_smol::client(tcp, config).unwrap(),
            Side::Server => smux_smol::server(tcp, config).unwrap(),
        }
    }

    mux_methods!();
}
