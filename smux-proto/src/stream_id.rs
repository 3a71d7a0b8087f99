//! Stream ids and which side of the connection allocates them.
//!
//! As in Go smux, the client opens odd ids starting at 3 (3, 5, 7, ...) and the server even ids
//! starting at 2 (2, 4, 6, ...). Ids are never reused: when the next id would wrap past
//! `u32::MAX`, the session "goes away" and the caller must start a new connection.

use std::fmt;

/// A stream id: the SID field of a frame.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct StreamId(u32);

impl StreamId {
    /// Wraps a raw id.
    pub const fn new(id: u32) -> Self {
        StreamId(id)
    }

    /// The raw id.
    pub const fn as_u32(self) -> u32 {
        self.0
    }
}

impl fmt::Debug for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StreamId({})", self.0)
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl From<StreamId> for u32 {
    fn from(id: StreamId) -> u32 {
        id.0
    }
}

/// Which end of the connection a session is. The wire needs it: it decides the stream ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// Opens odd ids: 3, 5, 7, ...
    Client,
    /// Opens even ids: 2, 4, 6, ...
    Server,
}

/// Hands out the ids of locally opened streams.
#[derive(Debug, Clone)]
pub(crate) struct StreamIdAllocator {
    /// The last id handed out (Go's `nextStreamID`, which starts at 1 or 0).
    last: u32,
    exhausted: bool,
}

impl StreamIdAllocator {
    pub(crate) fn new(side: Side) -> Self {
        let last = match side {
            Side::Client => 1,
            Side::Server => 0,
        };
        StreamIdAllocator {
            last,
            exhausted: false,
        }
    }

    /// Starts allocation after `last` (tests use it to reach the end of the id space).
    #[cfg(test)]
    pub(crate) fn starting_after(side: Side, last: u32) -> Self {
        let mut alloc = Self::new(side);
        alloc.last = last;
        alloc
    }

    /// The next id, or `None` once the id space is used up (Go's `ErrGoAway`). Exhaustion is
    /// permanent.
    pub(crate) fn next(&mut self) -> Option<StreamId> {
        if self.exhausted {
            return None;
        }
        match self.last.checked_add(2) {
            Some(id) => {
                self.last = id;
                Some(StreamId(id))
            }
            None => {
                self.exhausted = true;
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_are_odd_from_three() {
        let mut a = StreamIdAllocator::new(Side::Client);
        let ids: Vec<u32> = (0..4).map(|_| a.next().unwrap().as_u32()).collect();
        assert_eq!(ids, [3, 5, 7, 9]);
    }

    #[test]
    fn server_ids_are_even_from_two() {
        let mut a = StreamIdAllocator::new(Side::Server);
        let ids: Vec<u32> = (0..4).map(|_| a.next().unwrap().as_u32()).collect();
        assert_eq!(ids, [2, 4, 6, 8]);
    }

    #[test]
    fn client_goes_away_after_the_last_odd_id() {
        let mut a = StreamIdAllocator::starting_after(Side::Client, u32::MAX - 4);
        assert_eq!(a.next(), Some(StreamId(u32::MAX - 2)));
        assert_eq!(a.next(), Some(StreamId(u32::MAX)));
        assert_eq!(a.next(), None);
        assert_eq!(a.next(), None, "exhaustion is permanent");
    }

    #[test]
    fn server_goes_away_after_the_last_even_id() {
        let mut a = StreamIdAllocator::starting_after(Side::Server, u32::MAX - 3);
        assert_eq!(a.next(), Some(StreamId(u32::MAX - 1)));
        assert_eq!(a.next(), None);
    }
}
