//! The boxes requests' state machines run in, kept by a worker for its next requests.
//!
//! A request's state machine is large (about 15 KiB: room for every phase's locals and a timer
//! entry per timeout) and exists only while the request is in flight, in a box of its own, so
//! an idle keep-alive connection holds none of it. A fresh box per request was an allocation
//! per request, and, with the allocator giving emptied pages back at once
//! (`src/allocator.rs`), fresh pages for the kernel to fault in for nearly every request. A
//! worker keeps the boxes its finished requests leave instead — as many as its requests turn
//! over, the ones no request took for a second let go ([`Spares`]).
//!
//! A box holds `Option<F>`: the next request's future is written into it in place of the
//! finished one (`Pin::set`), so a box is never moved out of its pin. `F` is the future type
//! of one function ([`super::serve_request`]), which Rust cannot name; a worker keeps its slots
//! type-erased and finds them again by that function ([`RequestSlots::of`]).

use std::any::Any;
use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::spare_buffers::Spares;

/// One worker's kept boxes for the futures of one function.
pub struct RequestSlots<F> {
    spares: RefCell<Spares<Pin<Box<Option<F>>>>>,
}

impl<F: Future + 'static> RequestSlots<F> {
    /// Empty slots for the futures `make` returns.
    pub fn new<A, B, C>(_make: fn(A, B, C) -> F) -> Self {
        Self {
            spares: RefCell::default(),
        }
    }

    /// Empty slots for the futures `make` returns, type-erased (the caller cannot name `F`).
    pub fn erased<A, B, C>(make: fn(A, B, C) -> F) -> Box<dyn Any> {
        Box::new(Self::new(make))
    }

    /// The slots in `erased` for the futures `make` returns.
    pub fn of<A, B, C>(erased: &dyn Any, _make: fn(A, B, C) -> F) -> Option<&Self> {
        erased.downcast_ref()
    }

    /// Moves the future `request` makes into a kept box (a new one when none is kept); the box
    /// comes back when the returned future completes or is dropped. The future is made here,
    /// not by the caller, so that an `async` caller never holds one in its own state.
    pub fn start(&self, request: impl FnOnce() -> F) -> Running<'_, F> {
        let mut slot = self.spares.borrow_mut().take().unwrap_or_else(empty_box);
        slot.set(Some(request()));
        Running {
            slots: self,
            slot: Some(slot),
        }
    }

    /// Lets go of the boxes no request took since the last sweep. Called once a second.
    pub fn sweep(&self) {
        self.spares.borrow_mut().sweep();
    }

    fn give_back(&self, mut slot: Pin<Box<Option<F>>>) {
        slot.set(None);
        self.spares.borrow_mut().keep(slot);
    }
}

/// A new box, empty. Written into the allocation: `Box::pin(None)` would build the whole
/// `Option<F>` on the stack and copy all of it.
fn empty_box<F>() -> Pin<Box<Option<F>>> {
    Box::into_pin(Box::write(Box::new_uninit(), None))
}

/// A future running in a kept box.
pub struct Running<'a, F: Future + 'static> {
    slots: &'a RequestSlots<F>,
    /// Always there until dropped.
    slot: Option<Pin<Box<Option<F>>>>,
}

impl<F: Future + 'static> Future for Running<'_, F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let running = self
            .slot
            .as_mut()
            .and_then(|slot| slot.as_mut().as_pin_mut());
        match running {
            Some(future) => future.poll(cx),
            // Not reached: the slot holds the future from `start` until this is dropped.
            None => Poll::Pending,
        }
    }
}

impl<F: Future + 'static> Drop for Running<'_, F> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            self.slots.give_back(slot);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test set-up")]

    use std::cell::Cell;
    use std::rc::Rc;

    use super::*;

    async fn double(n: u64, dropped: Rc<Cell<u32>>, _: ()) -> u64 {
        let _count_drop = CountsDrop(dropped);
        n * 2
    }

    struct CountsDrop(Rc<Cell<u32>>);

    impl Drop for CountsDrop {
        fn drop(&mut self) {
            self.0.set(self.0.get() + 1);
        }
    }

    fn run<F: Future>(future: F) -> F::Output {
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .build()
            .unwrap()
            .block_on(future)
    }

    #[test]
    fn the_next_future_runs_in_the_box_the_last_one_left() {
        let erased = RequestSlots::erased(double);
        let slots = RequestSlots::of(&*erased, double).unwrap();
        let dropped = Rc::new(Cell::new(0));
        let first = slots.start(|| double(1, Rc::clone(&dropped), ()));
        let first_box: *const Option<_> = &**first.slot.as_ref().unwrap();
        assert_eq!(run(first), 2);
        assert_eq!(
            dropped.get(),
            1,
            "the finished future is dropped when its box comes back"
        );
        let second = slots.start(|| double(20, Rc::clone(&dropped), ()));
        let second_box: *const Option<_> = &**second.slot.as_ref().unwrap();
        assert_eq!(first_box, second_box);
        assert_eq!(run(second), 40);
    }

    #[test]
    fn a_future_dropped_before_it_ends_is_dropped_and_its_box_kept() {
        let erased = RequestSlots::erased(double);
        let slots = RequestSlots::of(&*erased, double).unwrap();
        let dropped = Rc::new(Cell::new(0));
        drop(slots.start(|| double(1, Rc::clone(&dropped), ())));
        assert_eq!(Rc::strong_count(&dropped), 1, "the future was dropped");
        assert_eq!(slots.spares.borrow().kept().len(), 1);
        slots.sweep();
        slots.sweep();
        assert!(
            slots.spares.borrow().kept().is_empty(),
            "unused for a second"
        );
    }

    #[test]
    fn slots_are_found_only_for_the_function_they_were_made_for() {
        async fn other(n: u64, _: Rc<Cell<u32>>, _: ()) -> u64 {
            n
        }
        let erased = RequestSlots::erased(double);
        assert!(RequestSlots::of(&*erased, other).is_none());
    }
}
