//! Records that leave the hot path: workers hand them to writer threads over bounded channels
//! and never wait on disk: the access log ([`access_log`]) and the spend ledger ([`ledger`]).
//! The writers run under `SCHED_IDLE` while they keep up, so they never delay a waking worker
//! ([`crate::runtime::writer_priority`]).

pub mod access_log;
pub mod keys;
pub mod ledger;
pub mod outbox;
pub mod policies;
pub mod postgres;

/// Moves everything queued on `rx` into `batch` without waiting; returns whether every sender
/// is gone (the writer then finishes its batch and ends).
fn drain<T>(rx: &flume::Receiver<T>, batch: &mut Vec<T>) -> bool {
    loop {
        match rx.try_recv() {
            Ok(item) => batch.push(item),
            Err(flume::TryRecvError::Empty) => return false,
            Err(flume::TryRecvError::Disconnected) => return true,
        }
    }
}
