//! A panic on a worker must not take the worker down with it. Nothing that input can reach is
//! meant to panic (lints forbid the usual ways), but if something does anyway, the damage stays
//! with the one connection whose task panicked: [`CatchPanic`] polls a task inside
//! `catch_unwind`, and a panicking task ends as if its connection closed (its state is dropped,
//! so the socket closes). The panic is logged and counted (`sluice_worker_panics_total`).
//!
//! A panic outside any connection's task (the accept loop itself) ends the worker's runtime;
//! [`super::spawn_workers`] then shuts its listener down and starts the worker again, so the
//! port never keeps a listener nobody accepts on.

use std::any::Any;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// Called once per caught panic (counts it in the metrics).
pub type OnPanic = Arc<dyn Fn() + Send + Sync>;

/// A future that turns a panic in `inner` into `Poll::Ready(Err(()))`.
pub struct CatchPanic<F> {
    inner: Pin<Box<F>>,
    worker: usize,
    on_panic: OnPanic,
}

impl<F: Future<Output = ()>> CatchPanic<F> {
    pub fn new(inner: F, worker: usize, on_panic: OnPanic) -> Self {
        Self {
            inner: Box::pin(inner),
            worker,
            on_panic,
        }
    }
}

impl<F: Future<Output = ()>> Future for CatchPanic<F> {
    type Output = Result<(), ()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let _times = super::poll_clock::PollScope::enter();
        let inner = self.inner.as_mut();
        match catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Ready(())) => Poll::Ready(Ok(())),
            Ok(Poll::Pending) => Poll::Pending,
            Err(payload) => {
                tracing::error!(
                    worker = self.worker,
                    panic = %panic_message(payload.as_ref()),
                    "a connection's task panicked; its connection is closed, the worker goes on"
                );
                (self.on_panic)();
                Poll::Ready(Err(()))
            }
        }
    }
}

/// The message a panic carried, if it was a string.
pub fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "(no message)"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn a_panicking_task_is_caught_and_counted() {
        let count = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&count);
        let on_panic: OnPanic = Arc::new(move || {
            seen.fetch_add(1, Ordering::Relaxed);
        });
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .build()
            .unwrap();
        let (first, second) = rt.block_on(async move {
            let bad = CatchPanic::new(
                async {
                    let text = String::from("é");
                    let _ = text.get(..1).expect("a forced panic");
                },
                0,
                Arc::clone(&on_panic),
            )
            .await;
            let good = CatchPanic::new(async {}, 0, on_panic).await;
            (bad, good)
        });
        assert_eq!((first, second), (Err(()), Ok(())));
        assert_eq!(count.load(Ordering::Relaxed), 1);
    }
}
