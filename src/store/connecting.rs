//! Connecting to a shared store with a bound on the whole exchange. The drivers bound the TCP
//! connect but not what follows it (PostgreSQL's start-up exchange; Redis's `CLIENT SETINFO`,
//! `AUTH` and `SELECT`): a server that takes the connection and never answers — hung, or a
//! pooler in front of a stopped one, or another listener on its port — would hold the caller
//! forever, and at start-up the whole node. So the connect runs on a thread of its own and is
//! waited for at most a timeout; an attempt given up on ends when the server answers or drops
//! the connection. Each store bounds how many attempts run at once, the ones given up on
//! included, so a server that never answers cannot pile up threads.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Why a connection attempt was given up on.
#[derive(Debug, thiserror::Error)]
pub enum GaveUp {
    #[error("no answer to a connection within {0:?}")]
    NoAnswer(Duration),
    #[error("{0} connection attempts are still waiting for an answer")]
    StillWaiting(usize),
    #[error("cannot start a thread to connect: {0}")]
    Thread(std::io::Error),
}

/// One store's connection attempts running at once.
pub struct Attempts {
    running: AtomicUsize,
    max: usize,
}

impl Attempts {
    pub const fn new(max: usize) -> Attempts {
        Attempts {
            running: AtomicUsize::new(0),
            max,
        }
    }

    /// Runs `connect` on a thread named `thread` and returns what it returns, unless it takes
    /// longer than `timeout` or `max` attempts are running already.
    pub fn run<T: Send + 'static>(
        &'static self,
        thread: &str,
        timeout: Duration,
        connect: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, GaveUp> {
        let attempt = self.begin()?;
        let (done, result) = std::sync::mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name(thread.into())
            .spawn(move || {
                let _attempt = attempt;
                let _ = done.send(connect());
            })
            .map_err(GaveUp::Thread)?;
        result
            .recv_timeout(timeout)
            .map_err(|_| GaveUp::NoAnswer(timeout))
    }

    /// Attempts running now, the ones given up on included.
    pub fn running(&self) -> usize {
        self.running.load(Ordering::Acquire)
    }

    fn begin(&'static self) -> Result<Running, GaveUp> {
        self.running
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .map(|_| Running(self))
            .map_err(|_| GaveUp::StillWaiting(self.max))
    }
}

/// One running attempt, counted in its store's [`Attempts`] while it lives.
struct Running(&'static Attempts);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test")]
    use super::*;

    use std::io::Read;
    use std::time::Instant;

    const TIMEOUT: Duration = Duration::from_millis(300);

    /// A server that takes connections and never answers: each attempt is given up on after
    /// the timeout; once `max` wait on it, a new one fails at once; when the server goes, they
    /// end.
    #[test]
    fn attempts_on_a_server_that_never_answers_are_bounded_in_time_and_in_number() {
        static ATTEMPTS: Attempts = Attempts::new(4);
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = silent.local_addr().unwrap();
        let wait_for_answer = move || {
            let mut stream = std::net::TcpStream::connect(addr)?;
            stream.read(&mut [0; 1])
        };
        for _ in 0..4 {
            let started = Instant::now();
            let given_up = ATTEMPTS.run("test-connect", TIMEOUT, wait_for_answer);
            assert!(matches!(given_up, Err(GaveUp::NoAnswer(_))), "{given_up:?}");
            assert!(started.elapsed() >= TIMEOUT);
        }
        let started = Instant::now();
        let refused = ATTEMPTS.run("test-connect", TIMEOUT, wait_for_answer);
        assert!(
            matches!(refused, Err(GaveUp::StillWaiting(4))),
            "{refused:?}"
        );
        assert!(started.elapsed() < TIMEOUT);
        drop(silent);
        let deadline = Instant::now() + Duration::from_secs(10);
        while ATTEMPTS.running() > 0 && Instant::now() < deadline {
            std::thread::yield_now();
        }
        assert_eq!(ATTEMPTS.running(), 0);
        let answered = ATTEMPTS.run("test-connect", TIMEOUT, || 7);
        assert_eq!(answered.unwrap(), 7);
    }
}
