//! A worker's side of the recorder: finished records collect in a worker-local vector and go
//! to the recorder as one batch — when [`BATCH`] are waiting, or [`FLUSH_AFTER`] after the
//! first of them, whichever comes first. So a request's record costs the worker a push, and the
//! channel (its lock, its allocation) is paid once per batch. One task per worker sends the
//! timed batches (parked between them), and a batch that waited out its time leaves room for as
//! many records in the next; the vectors are ones the recorder emptied ([`Recorder::empty_batch`]),
//! so none of this allocates per request. Nothing is lost on the way out:
//! the worker flushes as its runtime ends, and dropping the handle sends what waits too. (A
//! worker whose runtime itself panics may take its waiting batch with it — at most 64 records
//! of the last 2 ms — along with the requests it was serving.)

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::rc::{Rc, Weak};
use std::task::{Poll, Waker};
use std::time::Duration;

use super::{Finished, Recorder};

/// Records sent together at most.
pub const BATCH: usize = 64;

/// How long a record waits at most for others to join its batch.
pub const FLUSH_AFTER: Duration = Duration::from_millis(2);

/// One worker's records on their way to the recorder.
pub struct WorkerRecords {
    recorder: Recorder,
    waiting: RefCell<Vec<Finished>>,
    /// A flush is scheduled for the waiting records.
    flush_due: Cell<bool>,
    /// The worker's flushing task runs (started by the first record, then parked between
    /// batches: one task for the worker's life, not one per batch).
    flusher_started: Cell<bool>,
    /// Wakes the parked flushing task.
    flusher: RefCell<Option<Waker>>,
}

impl WorkerRecords {
    pub fn new(recorder: Recorder) -> Self {
        Self {
            recorder,
            waiting: RefCell::new(Vec::new()),
            flush_due: Cell::new(false),
            flusher_started: Cell::new(false),
            flusher: RefCell::new(None),
        }
    }

    /// Adds a finished record to the worker's batch. Must run inside the worker's runtime (it
    /// may start the task that flushes batches there).
    pub fn push(self: &Rc<Self>, finished: Finished) {
        let full = {
            let mut waiting = self.waiting.borrow_mut();
            waiting.push(finished);
            waiting.len() >= BATCH
        };
        if full {
            self.flush(|_| BATCH); // a full batch suggests the next fills too
        } else if !self.flush_due.replace(true) {
            if let Some(flusher) = self.flusher.borrow_mut().take() {
                flusher.wake();
            } else if !self.flusher_started.replace(true) {
                monoio::spawn(flush_each_batch(Rc::downgrade(self)));
            }
        }
    }

    /// Sends what waits now: the worker calls it as its runtime's last act, since a task still
    /// holding the records then would keep them from their Drop.
    pub fn flush_now(&self) {
        self.flush(|_| 0);
    }

    /// Sends what waits; the next batch starts with room for `next_room(records sent)`.
    fn flush(&self, next_room: impl FnOnce(usize) -> usize) {
        let mut waiting = self.waiting.borrow_mut();
        if waiting.is_empty() {
            return;
        }
        let room = next_room(waiting.len());
        let batch = std::mem::replace(&mut *waiting, self.recorder.empty_batch(room));
        drop(waiting);
        self.recorder.send(batch);
    }
}

/// The worker's flushing task: parked until a record waits, then sends the batch
/// [`FLUSH_AFTER`] later. It holds the records weakly: a task still pending when the runtime
/// is dropped is never dropped itself (monoio leaks it), and must not keep the records from
/// their Drop.
async fn flush_each_batch(records: Weak<WorkerRecords>) {
    loop {
        let due = poll_fn(|cx| match records.upgrade() {
            None => Poll::Ready(false),
            Some(records) if records.flush_due.get() => Poll::Ready(true),
            Some(records) => {
                *records.flusher.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await;
        if !due {
            return;
        }
        monoio::time::sleep(FLUSH_AFTER).await;
        let Some(records) = records.upgrade() else {
            return;
        };
        records.flush_due.set(false);
        // A batch that waited out its time suggests the next holds as many records.
        records.flush(|sent| sent);
    }
}

impl Drop for WorkerRecords {
    fn drop(&mut self) {
        let batch = std::mem::take(self.waiting.get_mut());
        self.recorder.send(batch);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test set-up")]

    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;
    use crate::record::AccessRecord;
    use crate::store::ledger::Ledger;

    /// A batch queue, as the recorder's channel holds them.
    type Batches = flume::Receiver<Vec<Finished>>;

    fn recorder(ledger: Ledger) -> (Recorder, Batches) {
        let (recorder, batches, _spares) = recorder_with_spares(ledger);
        (recorder, batches)
    }

    /// A recorder, its queue, and where its emptied vectors would come from.
    fn recorder_with_spares(ledger: Ledger) -> (Recorder, Batches, flume::Sender<Vec<Finished>>) {
        let (tx, rx) = flume::unbounded();
        let (spares_tx, spares) = flume::bounded(super::super::SPARE_BATCHES);
        let recorder = Recorder {
            tx,
            queued: Arc::new(AtomicUsize::new(0)),
            dropped: Arc::new(AtomicU64::new(0)),
            ledger,
            spares,
        };
        (recorder, rx, spares_tx)
    }

    fn finished(i: usize) -> Finished {
        Finished {
            record: AccessRecord {
                request_id: format!("req_{i}").into(),
                ..AccessRecord::default()
            },
            stored: false,
        }
    }

    fn runtime() -> monoio::Runtime<monoio::time::TimeDriver<monoio::LegacyDriver>> {
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .unwrap()
    }

    #[test]
    fn a_full_batch_goes_at_once_and_a_short_one_after_its_wait() {
        let (recorder, rx) = recorder(Ledger::off());
        let records = Rc::new(WorkerRecords::new(recorder));
        runtime().block_on(async move {
            for i in 0..BATCH + 3 {
                records.push(finished(i));
            }
            assert_eq!(rx.try_recv().unwrap().len(), BATCH);
            assert!(rx.try_recv().is_err(), "the last three wait for others");
            monoio::time::sleep(FLUSH_AFTER * 3).await;
            let rest = rx.try_recv().unwrap();
            assert_eq!(rest.len(), 3);
            assert_eq!(rest[2].record.request_id, format!("req_{}", BATCH + 2));
        });
    }

    #[test]
    fn the_flushing_task_sends_one_batch_after_another_with_room_for_as_many() {
        let (recorder, rx) = recorder(Ledger::off());
        let records = Rc::new(WorkerRecords::new(recorder));
        runtime().block_on(async move {
            for round in 0..3 {
                for i in 0..5 {
                    records.push(finished(round * 10 + i));
                }
                assert!(rx.try_recv().is_err(), "round {round}: the batch waits");
                monoio::time::sleep(FLUSH_AFTER * 3).await;
                let batch = rx.try_recv().unwrap();
                assert_eq!(batch.len(), 5, "round {round}");
                assert_eq!(
                    batch[4].record.request_id,
                    format!("req_{}", round * 10 + 4)
                );
                assert!(
                    records.waiting.borrow().capacity() >= 5,
                    "the next batch has room for as many"
                );
            }
            assert!(records.flusher_started.get());
        });
    }

    #[test]
    fn the_next_batch_fills_a_vector_the_recorder_emptied() {
        let (recorder, rx, spares) = recorder_with_spares(Ledger::off());
        let spare: Vec<Finished> = Vec::with_capacity(BATCH);
        let spare_at = spare.as_ptr();
        spares.send(spare).unwrap();
        let records = Rc::new(WorkerRecords::new(recorder));
        runtime().block_on(async move {
            for i in 0..BATCH {
                records.push(finished(i));
            }
            assert_eq!(rx.try_recv().unwrap().len(), BATCH);
            let waiting = records.waiting.borrow();
            assert_eq!(waiting.as_ptr(), spare_at, "the spare, not a new vector");
            assert_eq!(waiting.capacity(), BATCH);
        });
    }

    #[test]
    fn what_waits_is_sent_when_the_worker_ends() {
        let (recorder, rx) = recorder(Ledger::off());
        let records = Rc::new(WorkerRecords::new(recorder));
        let mut rt = runtime();
        let pushing = Rc::clone(&records);
        rt.block_on(async move {
            pushing.push(finished(1));
            pushing.push(finished(2));
        });
        assert!(rx.try_recv().is_err(), "a flush is scheduled, not run");
        // The scheduled flush (never run: the runtime is done) does not hold them back.
        drop(records);
        assert_eq!(rx.try_recv().unwrap().len(), 2);
        drop(rt);
    }

    #[test]
    fn the_last_flush_sends_what_waits() {
        let (recorder, rx) = recorder(Ledger::off());
        let records = Rc::new(WorkerRecords::new(recorder));
        runtime().block_on(async move {
            records.push(finished(1));
            records.flush_now();
            assert_eq!(rx.try_recv().unwrap().len(), 1);
            records.flush_now();
            assert!(rx.try_recv().is_err(), "nothing waits: nothing is sent");
        });
    }

    #[test]
    fn a_batch_over_the_bound_is_dropped_counted_and_the_ledger_marked() {
        let dir = tempfile::tempdir().unwrap();
        let (ledger, thread) = crate::store::ledger::start(
            &dir.path().join("ledger.db"),
            Duration::from_millis(1),
            crate::config::Durability::Interval,
            crate::runtime::writer_priority::WriterPriority::Normal,
        )
        .unwrap();
        let (recorder, rx) = recorder(ledger.clone());
        recorder
            .queued
            .store(super::super::QUEUE - 1, Ordering::Relaxed);
        recorder.send(vec![finished(1), finished(2)]);
        assert!(rx.try_recv().is_err());
        assert_eq!(recorder.dropped(), 2);
        assert_eq!(recorder.queued(), super::super::QUEUE - 1);
        assert!(!ledger.is_healthy());
        assert_eq!(ledger.dropped(), 2);
        drop((recorder, ledger));
        thread.join().unwrap();
    }
}
