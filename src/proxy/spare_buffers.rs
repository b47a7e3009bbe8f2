//! A worker's spare I/O buffers. A request's upstream read buffer and its two first writes (the
//! upstream request, the client's response head) come back here when the request is done with
//! them, and the next request takes them instead of allocating its own. A few of each are kept,
//! of the sizes a request takes; a buffer that grew, or that something still shares, is left to
//! the allocator. Idle connections hold none of them.

use std::cell::RefCell;

use bytes::BytesMut;

/// Bytes of an upstream read buffer (a response head and the body that comes with it).
pub const UPSTREAM_READ: usize = 16 * 1024;
/// Spare buffers kept of each kind: about how many requests of one worker start, or finish,
/// within one turn of its loop.
const KEPT: usize = 4;
/// Largest write buffer kept: a response head with a body of one upstream read, a request head
/// with a small body. Larger ones go back to the allocator.
const LARGEST_WRITE: usize = 2 * UPSTREAM_READ;

#[derive(Default)]
pub struct SpareBuffers {
    reads: RefCell<Vec<BytesMut>>,
    writes: RefCell<Vec<Vec<u8>>>,
}

impl SpareBuffers {
    /// An empty buffer of [`UPSTREAM_READ`] bytes.
    pub fn upstream_read(&self) -> BytesMut {
        self.reads
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| BytesMut::with_capacity(UPSTREAM_READ))
    }

    /// Takes back an upstream read buffer: kept when nothing else holds any of it (a parsed
    /// head split off it is gone) and it did not grow; its contents are discarded.
    pub fn give_upstream_read(&self, mut buf: BytesMut) {
        buf.clear();
        let whole = rewound(&mut buf, UPSTREAM_READ);
        let mut reads = self.reads.borrow_mut();
        if whole && reads.len() < KEPT {
            reads.push(buf);
        }
    }

    /// An empty buffer with room for `len` bytes.
    pub fn write(&self, len: usize) -> Vec<u8> {
        let mut writes = self.writes.borrow_mut();
        match writes.last() {
            Some(spare) if spare.capacity() >= len => writes.pop().unwrap_or_default(),
            _ => Vec::with_capacity(len),
        }
    }

    /// Takes back a write buffer once written; its contents are discarded.
    pub fn give_write(&self, mut buf: Vec<u8>) {
        let mut writes = self.writes.borrow_mut();
        if buf.capacity() <= LARGEST_WRITE && writes.len() < KEPT {
            buf.clear();
            writes.push(buf);
        }
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
        assert!(spare.reads.borrow().is_empty());
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
        for _ in 0..KEPT + 2 {
            spare.give_write(Vec::with_capacity(10));
        }
        let writes = spare.writes.borrow();
        assert_eq!(writes.len(), KEPT);
        assert!(writes.iter().all(|w| w.capacity() <= LARGEST_WRITE));
    }
}
