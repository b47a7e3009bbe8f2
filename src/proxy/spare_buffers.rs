//! A worker's spare I/O buffers. A request's upstream read buffer and its two first writes (the
//! upstream request, the client's response head) come back here when the request is done with
//! them, and the next request takes them instead of allocating its own. A buffer that grew, or
//! that something still shares, is left to the allocator.
//!
//! As many are kept as the worker's requests turn over (up to [`MOST_KEPT`] of each kind):
//! under load, the requests finishing in one turn of the loop give back what those starting in
//! the next one take. Once a second the spares that none of that second's requests needed go
//! back to the allocator, so an idle worker holds none of them.

use std::cell::RefCell;

use bytes::BytesMut;

/// Bytes of an upstream read buffer (a response head and the body that comes with it).
pub const UPSTREAM_READ: usize = 16 * 1024;
/// Spares kept of each kind at most: a worker's memory for them is bounded (1 MiB of read
/// buffers, 2 MiB of write buffers, 1 MiB of request boxes) whatever its concurrency.
const MOST_KEPT: usize = 64;
/// Largest write buffer kept: a response head with a body of one upstream read, a request head
/// with a small body. Larger ones go back to the allocator.
const LARGEST_WRITE: usize = 2 * UPSTREAM_READ;

#[derive(Default)]
pub struct SpareBuffers {
    reads: RefCell<Spares<BytesMut>>,
    writes: RefCell<Spares<Vec<u8>>>,
}

impl SpareBuffers {
    /// An empty buffer of [`UPSTREAM_READ`] bytes.
    pub fn upstream_read(&self) -> BytesMut {
        self.reads
            .borrow_mut()
            .take()
            .unwrap_or_else(|| BytesMut::with_capacity(UPSTREAM_READ))
    }

    /// Takes back an upstream read buffer: kept when nothing else holds any of it (a parsed
    /// head split off it is gone) and it did not grow; its contents are discarded.
    pub fn give_upstream_read(&self, mut buf: BytesMut) {
        buf.clear();
        if rewound(&mut buf, UPSTREAM_READ) {
            self.reads.borrow_mut().keep(buf);
        }
    }

    /// An empty buffer with room for `len` bytes.
    pub fn write(&self, len: usize) -> Vec<u8> {
        self.writes
            .borrow_mut()
            .take_if(|spare| spare.capacity() >= len)
            .unwrap_or_else(|| Vec::with_capacity(len))
    }

    /// Takes back a write buffer once written; its contents are discarded.
    pub fn give_write(&self, mut buf: Vec<u8>) {
        if buf.capacity() <= LARGEST_WRITE {
            buf.clear();
            self.writes.borrow_mut().keep(buf);
        }
    }

    /// Lets go of the spares no request took since the last sweep. Called once a second.
    pub fn sweep(&self) {
        self.reads.borrow_mut().sweep();
        self.writes.borrow_mut().sweep();
    }
}

/// Spares of one kind (buffers here, boxes in [`super::request_slots`]), and the fewest of
/// them kept at any moment since the last sweep: that many were never taken in the meantime.
pub(super) struct Spares<T> {
    kept: Vec<T>,
    fewest: usize,
}

impl<T> Default for Spares<T> {
    fn default() -> Self {
        Self {
            kept: Vec::new(),
            fewest: 0,
        }
    }
}

impl<T> Spares<T> {
    /// The last spare kept.
    pub(super) fn take(&mut self) -> Option<T> {
        self.take_if(|_| true)
    }

    /// The last spare kept, when `fits` accepts it.
    pub(super) fn take_if(&mut self, fits: impl FnOnce(&T) -> bool) -> Option<T> {
        let taken = self.kept.pop_if(|spare| fits(spare));
        self.fewest = self.fewest.min(self.kept.len());
        taken
    }

    pub(super) fn keep(&mut self, spare: T) {
        if self.kept.len() < MOST_KEPT {
            self.kept.push(spare);
        }
    }

    /// Lets go of the spares not taken since the last sweep.
    pub(super) fn sweep(&mut self) {
        let unused = self.fewest.min(self.kept.len());
        self.kept.drain(..unused);
        if self.kept.is_empty() {
            self.kept = Vec::new();
        }
        self.fewest = self.kept.len();
    }

    #[cfg(test)]
    pub(super) fn kept(&self) -> &[T] {
        &self.kept
    }
}

/// Whether empty `buf` is now the whole of an allocation of exactly `size` bytes, rewound to
/// its start. An emptied buffer sits at the end of what was split off it; `bytes` rewinds it
/// only when this is the allocation's last handle (nothing split off it is still alive). A
/// buffer that grew past `size`, or is still shared, is left as it is.
pub fn rewound(buf: &mut BytesMut, size: usize) -> bool {
    buf.is_empty() && buf.capacity() < size && buf.try_reclaim(size) && buf.capacity() == size
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_buffer_comes_back_whole_once_its_head_is_gone() {
        let spare = SpareBuffers::default();
        let mut buf = spare.upstream_read();
        let start = buf.as_ptr();
        buf.extend_from_slice(b"HTTP/1.1 200 OK\r\n\r\nbody");
        let head = buf.split_to(19).freeze();
        drop(head);
        spare.give_upstream_read(buf);
        let again = spare.upstream_read();
        assert_eq!(again.as_ptr(), start);
        assert_eq!((again.len(), again.capacity()), (0, UPSTREAM_READ));
    }

    #[test]
    fn a_read_buffer_still_shared_or_grown_is_not_kept() {
        let spare = SpareBuffers::default();
        let mut shared = spare.upstream_read();
        shared.extend_from_slice(b"HTTP/1.1 200 OK\r\n\r\n");
        let head = shared.split_to(19).freeze();
        spare.give_upstream_read(shared);
        let mut grown = BytesMut::with_capacity(UPSTREAM_READ);
        grown.extend_from_slice(&[b'x'; UPSTREAM_READ + 1]);
        let _ = grown.split_to(UPSTREAM_READ);
        spare.give_upstream_read(grown);
        assert!(spare.reads.borrow().kept.is_empty());
        let mut fresh = spare.upstream_read();
        fresh.extend_from_slice(&[b'y'; UPSTREAM_READ]);
        assert_eq!(&head[..], b"HTTP/1.1 200 OK\r\n\r\n");
    }

    #[test]
    fn write_buffers_are_kept_few_and_small_and_handed_out_empty_and_large_enough() {
        let spare = SpareBuffers::default();
        let mut small = spare.write(100);
        small.extend_from_slice(b"written");
        let small_at = small.as_ptr();
        spare.give_write(small);
        let again = spare.write(50);
        assert_eq!((again.as_ptr(), again.len()), (small_at, 0));
        spare.give_write(again);
        let larger = spare.write(1000);
        assert!(larger.capacity() >= 1000);
        assert_ne!(larger.as_ptr(), small_at);
        spare.give_write(Vec::with_capacity(LARGEST_WRITE + 1));
        for _ in 0..MOST_KEPT + 2 {
            spare.give_write(Vec::with_capacity(10));
        }
        let writes = spare.writes.borrow();
        assert_eq!(writes.kept.len(), MOST_KEPT);
        assert!(writes.kept.iter().all(|w| w.capacity() <= LARGEST_WRITE));
    }

    /// A buffer as a request leaves it: a response head read into it and split off, gone.
    fn used(mut buf: BytesMut) -> BytesMut {
        buf.extend_from_slice(b"HTTP/1.1 204 No Content\r\n\r\n");
        drop(buf.split());
        buf
    }

    #[test]
    fn a_sweep_lets_go_of_the_spares_no_request_took_since_the_last_one() {
        let spare = SpareBuffers::default();
        let taken: Vec<BytesMut> = (0..8).map(|_| spare.upstream_read()).collect();
        taken
            .into_iter()
            .for_each(|buf| spare.give_upstream_read(used(buf)));
        spare.sweep();
        assert_eq!(spare.reads.borrow().kept.len(), 8, "all eight were in use");
        // Three requests at a time during the next second: five spares sat unused.
        for _ in 0..10 {
            let three: Vec<BytesMut> = (0..3).map(|_| spare.upstream_read()).collect();
            three
                .into_iter()
                .for_each(|buf| spare.give_upstream_read(used(buf)));
        }
        spare.sweep();
        assert_eq!(spare.reads.borrow().kept.len(), 3);
        // An idle second: none needed.
        spare.sweep();
        assert!(spare.reads.borrow().kept.is_empty());
        let fresh = spare.upstream_read();
        assert_eq!(fresh.capacity(), UPSTREAM_READ);
    }
}
