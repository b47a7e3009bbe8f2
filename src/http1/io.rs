//! Reading into a growing buffer under monoio's rent model: the buffer moves into the read and
//! comes back, so one allocation per connection serves every read.

use bytes::BytesMut;
use monoio::buf::IoBufMut;
use monoio::io::AsyncReadRent;

/// Reads once into the spare capacity of `buf` (reserving `reserve` bytes first when less is
/// free) and hands the buffer back with the new bytes appended.
pub async fn read_some<S: AsyncReadRent>(
    stream: &mut S,
    mut buf: BytesMut,
    reserve: usize,
) -> (std::io::Result<usize>, BytesMut) {
    if buf.capacity() - buf.len() < reserve {
        buf.reserve(reserve);
    }
    let len = buf.len();
    let (res, slice) = stream.read(buf.slice_mut(len..)).await;
    (res, slice.into_inner())
}
