//! A tokio transport seen through the `futures` I/O traits that `smux-futures` drives.
//!
//! Unlike `tokio_util::compat`, it keeps vectored writes: the driver hands the transport a
//! frame header and its payload as separate slices, and a transport that can gather them gets
//! them in one call (one `writev` on a `TcpStream`). A transport that cannot gather gets small
//! slices copied into one buffer first, so headers never go out as write calls of their own.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Up to this many bytes are gathered by copying for a transport without vectored writes.
const GATHER_MAX: usize = 64 * 1024;

#[derive(Debug)]
pub(crate) struct Transport<T> {
    io: T,
    /// Scratch for gathering slices when `io` does not write vectors itself.
    gather: Vec<u8>,
}

impl<T> Transport<T> {
    pub(crate) fn new(io: T) -> Self {
        Transport {
            io,
            gather: Vec::new(),
        }
    }
}

impl<T: AsyncRead + Unpin> futures::io::AsyncRead for Transport<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let mut buf = ReadBuf::new(buf);
        match Pin::new(&mut self.io).poll_read(cx, &mut buf) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(buf.filled().len())),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncWrite + Unpin> futures::io::AsyncWrite for Transport<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.io.is_write_vectored() || bufs.len() < 2 {
            return Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        }
        // Without vectored writes only the first slice would go out: copy as many slices as
        // fit into one buffer (a large first slice goes out alone, uncopied).
        if bufs[0].len() >= GATHER_MAX {
            return Pin::new(&mut this.io).poll_write(cx, &bufs[0]);
        }
        this.gather.clear();
        for buf in bufs {
            let room = GATHER_MAX - this.gather.len();
            if room == 0 {
                break;
            }
            this.gather.extend_from_slice(&buf[..buf.len().min(room)]);
        }
        Pin::new(&mut this.io).poll_write(cx, &this.gather)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::io::AsyncWriteExt;

    /// A tokio writer without vectored writes that records each write call.
    #[derive(Default)]
    struct Recorder {
        calls: Vec<Vec<u8>>,
    }

    impl AsyncWrite for Recorder {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.calls.push(buf.to_vec());
            Poll::Ready(Ok(buf.len()))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[test]
    fn small_slices_are_gathered_into_one_write_without_vectored_support() {
        futures::executor::block_on(async {
            let mut t = Transport::new(Recorder::default());
            let header = [1u8; 8];
            let payload = vec![2u8; 1000];
            let n = t
                .write_vectored(&[IoSlice::new(&header), IoSlice::new(&payload)])
                .await
                .unwrap();
            assert_eq!(n, 1008);
            assert_eq!(t.io.calls.len(), 1, "one write call for header and payload");
            assert_eq!(&t.io.calls[0][..8], &header);
            assert_eq!(&t.io.calls[0][8..], &payload[..]);
        });
    }

    #[test]
    fn gathering_stops_at_the_cap_and_a_large_first_slice_goes_alone() {
        futures::executor::block_on(async {
            let mut t = Transport::new(Recorder::default());
            let big = vec![3u8; GATHER_MAX + 10];
            let small = [4u8; 8];
            let n = t
                .write_vectored(&[IoSlice::new(&small), IoSlice::new(&big)])
                .await
                .unwrap();
            assert_eq!(n, GATHER_MAX, "gathered up to the cap");
            let n = t
                .write_vectored(&[IoSlice::new(&big), IoSlice::new(&small)])
                .await
                .unwrap();
            assert_eq!(n, big.len(), "a large first slice is written as it is");
        });
    }
}
