//! The worker-local face of shutdown. One task per worker awaits the cross-thread signal and
//! fires this; connections wait on it with no lock and no allocation per wait (a slab slot holds
//! each waiting connection's waker), which matters because every idle keep-alive read waits on it.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use slab::Slab;

use super::Shutdown;

/// Shutdown as seen inside one worker.
#[derive(Default)]
pub struct LocalShutdown {
    fired: Cell<bool>,
    waiters: RefCell<Slab<Waker>>,
}

impl LocalShutdown {
    /// A local signal that fires when `shutdown` does. Call inside the worker's runtime.
    pub fn follow(shutdown: Shutdown) -> Rc<LocalShutdown> {
        let local = Rc::new(LocalShutdown::default());
        let fire = Rc::clone(&local);
        monoio::spawn(async move {
            shutdown.wait().await;
            fire.fire();
        });
        local
    }

    /// Fires the signal, waking every waiter.
    pub fn fire(&self) {
        self.fired.set(true);
        let waiters = std::mem::take(&mut *self.waiters.borrow_mut());
        for (_, waker) in waiters {
            waker.wake();
        }
    }

    pub fn is_fired(&self) -> bool {
        self.fired.get()
    }

    /// Resolves once the signal has fired.
    pub fn wait(&self) -> Wait<'_> {
        Wait {
            owner: self,
            slot: None,
        }
    }
}

/// The future of [`LocalShutdown::wait`].
pub struct Wait<'a> {
    owner: &'a LocalShutdown,
    slot: Option<usize>,
}

impl Future for Wait<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.owner.fired.get() {
            self.slot = None;
            return Poll::Ready(());
        }
        let mut waiters = self.owner.waiters.borrow_mut();
        match self.slot {
            Some(slot) if waiters.contains(slot) => waiters[slot].clone_from(cx.waker()),
            _ => {
                let slot = waiters.insert(cx.waker().clone());
                drop(waiters);
                self.slot = Some(slot);
            }
        }
        Poll::Pending
    }
}

impl Drop for Wait<'_> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot {
            if !self.owner.fired.get() {
                self.owner.waiters.borrow_mut().try_remove(slot);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiters_wake_on_fire_and_clean_up_when_dropped() {
        let mut rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
            .build()
            .unwrap();
        rt.block_on(async {
            let local = Rc::new(LocalShutdown::default());
            for _ in 0..1000 {
                // A wait that is polled once and then dropped (a read won the select) frees its slot.
                let mut w = std::pin::pin!(local.wait());
                let waker = futures_waker();
                let mut cx = Context::from_waker(&waker);
                assert!(w.as_mut().poll(&mut cx).is_pending());
            }
            assert_eq!(local.waiters.borrow().len(), 0);
            let fire = Rc::clone(&local);
            monoio::spawn(async move { fire.fire() });
            local.wait().await;
            assert!(local.is_fired());
        });
    }

    fn futures_waker() -> Waker {
        struct Noop;
        impl std::task::Wake for Noop {
            fn wake(self: std::sync::Arc<Self>) {}
        }
        Waker::from(std::sync::Arc::new(Noop))
    }
}
