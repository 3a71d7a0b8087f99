//! The driver's receive buffer, recycling its allocations.
//!
//! Received frames of 32 KiB or more are split off the receive buffer without a copy and live
//! on until the application reads them. `BytesMut` reuses its allocation only once no frame
//! points into it any more; while the reader lags, every refill would be a fresh allocation,
//! and fresh memory costs a page fault per 4 KiB (the allocator gives freed blocks back to
//! the system and takes new ones). [`Recycler`] sets the old block aside instead and takes it
//! back once its frames are read, so steady traffic cycles through a few warm blocks.
//!
//! Memory stays bounded: at most `max_spare` blocks are set aside (older ones are left to be
//! freed by their frames), and when the current block can be reused in place, meaning every
//! frame was read, all but one spare block are released.
//!
//! Reads go into [`Recycler::read_space`], memory after the received bytes that was zeroed
//! once and is then reused as it is: a transport read needs an initialised slice, and zeroing
//! the read size (4 to 64 KiB) before every read cost more than a small message. It is kept
//! (and zeroed) only as far as reads have reached into the block.

use bytes::BytesMut;

/// Spare blocks kept once the reader has caught up.
const KEPT_WHEN_IDLE: usize = 1;

/// A growable buffer whose chunks are split off and whose allocations are recycled.
#[derive(Debug)]
pub(crate) struct Recycler {
    /// Received bytes not yet consumed.
    current: BytesMut,
    /// Initialised memory right after `current` in the same block (split off it), where the
    /// next read goes.
    read_space: BytesMut,
    /// `current` is one of our blocks (not the initial empty buffer).
    allocated: bool,
    /// Earlier blocks that chunks still pointed into when room was needed.
    spare: Vec<BytesMut>,
    block: usize,
    max_spare: usize,
}

impl Recycler {
    /// A recycler allocating blocks of `block` bytes (or more, for a larger request) and
    /// setting aside at most `max_spare` of them.
    pub(crate) fn new(block: usize, max_spare: usize) -> Self {
        Recycler {
            current: BytesMut::new(),
            read_space: BytesMut::new(),
            allocated: false,
            spare: Vec::new(),
            block,
            max_spare,
        }
    }

    /// The buffer: append to it, split chunks off its front.
    pub(crate) fn buf(&mut self) -> &mut BytesMut {
        &mut self.current
    }

    /// At least `want` bytes of initialised memory right after the received bytes, for a read
    /// into it; [`filled`](Self::filled) then says how much of it the read filled.
    pub(crate) fn read_space(&mut self, want: usize) -> &mut [u8] {
        if self.read_space.len() < want {
            // The block is whole again (the space is contiguous with the contents), so it can
            // be reclaimed in place; the space already zeroed is not zeroed again.
            let received = self.current.len();
            let space = std::mem::take(&mut self.read_space);
            self.current.unsplit(space);
            let have = self.current.len() - received;
            self.reserve(want - have);
            self.current.resize(received + want, 0);
            self.read_space = self.current.split_off(received);
        }
        &mut self.read_space[..want]
    }

    /// The last read put `n` bytes at the start of the read space: they join the contents.
    pub(crate) fn filled(&mut self, n: usize) {
        let read = self.read_space.split_to(n);
        self.current.unsplit(read);
    }

    /// Makes room for `additional` more bytes after the current contents, reusing a block
    /// whose chunks are all gone when possible. The contents are kept (moved to the new block
    /// if there is one).
    fn reserve(&mut self, additional: usize) {
        let len = self.current.len();
        if self.current.capacity() - len >= additional {
            return;
        }
        if self.current.try_reclaim(additional) {
            // Nothing points into the current block: the reader caught up.
            self.spare.truncate(KEPT_WHEN_IDLE);
            return;
        }
        let need = len + additional;
        let reusable = self.spare.iter_mut().position(|b| b.try_reclaim(need));
        let mut next = match reusable {
            Some(i) => self.spare.swap_remove(i),
            None => BytesMut::with_capacity(need.max(self.block)),
        };
        next.extend_from_slice(&self.current);
        let mut old = std::mem::replace(&mut self.current, next);
        old.clear();
        if std::mem::replace(&mut self.allocated, true) && self.max_spare > 0 {
            if self.spare.len() == self.max_spare {
                self.spare.remove(0);
            }
            self.spare.push(old);
        }
    }

    /// Blocks set aside (for tests).
    #[cfg(test)]
    fn spare_count(&self) -> usize {
        self.spare.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_comes_back_once_its_chunks_are_dropped() {
        let mut r = Recycler::new(1024, 4);
        r.reserve(1000);
        r.buf().extend_from_slice(&[1; 1000]);
        let first = r.buf().split().freeze();
        let first_ptr = first.as_ptr();
        // The chunk is alive: room comes from a new block, the old one is set aside.
        r.reserve(1000);
        assert_eq!(r.spare_count(), 1);
        r.buf().extend_from_slice(&[2; 1000]);
        let second = r.buf().split().freeze();
        drop(first);
        // The first block is free again and is reused instead of allocating.
        r.reserve(1000);
        assert_eq!(r.buf().as_ptr(), first_ptr);
        assert_eq!(&second[..], &[2; 1000][..]);
    }

    #[test]
    fn reads_fill_the_space_and_join_the_contents() {
        let mut r = Recycler::new(1024, 2);
        let space = r.read_space(100);
        assert_eq!(space.len(), 100);
        space[..3].copy_from_slice(b"abc");
        r.filled(3);
        assert_eq!(&r.buf()[..], b"abc");
        // The next read goes right after, into memory zeroed once: no new block.
        let before = r.buf().as_ptr();
        r.read_space(100)[..2].copy_from_slice(b"de");
        r.filled(2);
        assert_eq!(&r.buf()[..], b"abcde");
        assert_eq!(r.buf().as_ptr(), before);
        // Consumed from the front, as the session does, then more read.
        let _ = r.buf().split_to(4);
        r.read_space(2000)[..1].copy_from_slice(b"f");
        r.filled(1);
        assert_eq!(&r.buf()[..], b"ef");
        // Nothing read: the contents stay.
        let _ = r.read_space(10);
        r.filled(0);
        assert_eq!(&r.buf()[..], b"ef");
    }

    #[test]
    fn the_read_space_is_not_zeroed_again() {
        let mut r = Recycler::new(1024, 2);
        r.read_space(64).fill(7);
        r.filled(0);
        // The bytes a read left unfilled are still there: the memory was not zeroed again.
        assert_eq!(r.read_space(64)[0], 7);
    }

    #[test]
    fn contents_move_with_the_block() {
        let mut r = Recycler::new(64, 2);
        r.reserve(64);
        r.buf().extend_from_slice(&[7; 60]);
        let pinned = r.buf().split_to(50).freeze();
        r.reserve(64);
        assert_eq!(&r.buf()[..], &[7; 10][..], "the unsplit tail is kept");
        assert_eq!(pinned.len(), 50);
    }

    #[test]
    fn spare_blocks_are_bounded_and_released_when_idle() {
        let mut r = Recycler::new(128, 3);
        let mut chunks = Vec::new();
        for _ in 0..10 {
            r.reserve(128);
            r.buf().extend_from_slice(&[0; 128]);
            chunks.push(r.buf().split().freeze());
            assert!(r.spare_count() <= 3);
        }
        assert_eq!(r.spare_count(), 3);
        chunks.clear();
        r.reserve(128);
        r.reserve(128);
        assert!(r.spare_count() <= KEPT_WHEN_IDLE);
    }
}
