//! Listening sockets. monoio binds with `SO_REUSEPORT`, which lets a second process bind a port
//! that is already in use without any error: requests would then be split silently between the
//! two. So sluice first probes the address with a plain bind (no `SO_REUSEPORT`), which fails
//! with `EADDRINUSE` when anyone holds it, and only then binds one `SO_REUSEPORT` socket per
//! worker. With port 0 the first socket picks the port and the others join it.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

/// Listen backlog per socket.
const BACKLOG: i32 = 4096;

/// Binds `count` listeners sharing `addr`; refuses an address another process holds.
pub fn bind_listeners(addr: SocketAddr, count: usize) -> io::Result<Vec<std::net::TcpListener>> {
    if addr.port() != 0 {
        probe_free(addr)?;
    }
    let first = bind_one(addr)?;
    let actual = first.local_addr()?;
    let mut listeners = vec![first];
    for _ in 1..count.max(1) {
        listeners.push(bind_one(actual)?);
    }
    Ok(listeners)
}

fn probe_free(addr: SocketAddr) -> io::Result<()> {
    let probe = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    probe.set_reuse_address(true)?;
    probe.bind(&addr.into()).map_err(|e| {
        if e.kind() == io::ErrorKind::AddrInUse {
            io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("{addr} is already in use by another process"),
            )
        } else {
            e
        }
    })?;
    Ok(())
}

/// One `SO_REUSEPORT` listener on `addr` (joins the others bound there).
pub fn bind_one(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nodelay(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_port_is_refused() {
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = held.local_addr().unwrap();
        let err = bind_listeners(addr, 2).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        // Also when the holder itself used SO_REUSEPORT (a second sluice).
        let first = bind_listeners("127.0.0.1:0".parse().unwrap(), 2).unwrap();
        let addr = first[0].local_addr().unwrap();
        assert_eq!(first[1].local_addr().unwrap(), addr);
        assert_eq!(
            bind_listeners(addr, 1).unwrap_err().kind(),
            io::ErrorKind::AddrInUse
        );
    }
}
