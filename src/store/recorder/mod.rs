//! The recorder: the one thread every finished request's record goes to. A worker hands it
//! records in batches ([`worker::WorkerRecords`]: one channel send per batch, not three per
//! request); the recorder writes the access-log line, folds the record into the metrics,
//! writes the audit line's fields (the audit writer gets them in one message per batch and
//! chains them) and queues the record for the spend ledger, then offers the batch to the
//! OpenTelemetry exporter. So serializing, hashing and SQLite all happen off the workers,
//! and the workers' only cost per request is moving the record into a vector — one the
//! recorder emptied and handed back (up to [`SPARE_BATCHES`] wait), so that a batch is not an
//! allocation on the worker and a free on the recorder.
//!
//! The queue is bounded by records (not batches): past [`QUEUE`] records waiting, a batch is
//! dropped and counted — and, since the ledger then misses records, the ledger is marked
//! unhealthy as if its own queue were full (never a blocked worker). The recorder drains the
//! queue every 10 ms rather than being woken per batch.
//! Shutdown drops the senders; the recorder drains the channel, flushes and exits, and the
//! ledger and audit writers (which it feeds) end after it.

pub mod line;
pub mod worker;

use std::fs::OpenOptions;
use std::io::{BufWriter, Write};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::ledger::Ledger;
use crate::audit::{AuditLog, RequestLines};
use crate::config::AccessLogTarget;
use crate::metrics::{Collector, Metrics};
pub use crate::record::AccessRecord;
use crate::runtime::writer_priority::{WriterPacing, WriterPriority};
use crate::telemetry::export::Exporter;

/// Records queued at most before new batches are dropped.
const QUEUE: usize = 65_536;

/// Emptied batch vectors the recorder keeps for the workers' next batches, at most: about a
/// drain interval's worth of batches at full load. Only a vector with room for at most
/// [`worker::BATCH`] records (~700 bytes each) goes back, so they hold at most ~350 KB in all.
const SPARE_BATCHES: usize = 8;

/// A finished request's record on its way to the recorder.
pub struct Finished {
    pub record: AccessRecord,
    /// The ledger and the audit log already have it (`store.durability = "sync"` stores it
    /// before the response's last byte); the recorder only logs and measures it.
    pub stored: bool,
}

/// The workers' handle on the recorder.
#[derive(Clone)]
pub struct Recorder {
    tx: flume::Sender<Vec<Finished>>,
    queued: Arc<AtomicUsize>,
    dropped: Arc<AtomicU64>,
    /// Told when a dropped batch held records it should have had.
    ledger: Ledger,
    /// Batch vectors the recorder emptied: a worker fills one vector per batch and the
    /// recorder empties it on its own thread, so without them every batch is a new one.
    spares: flume::Receiver<Vec<Finished>>,
}

impl Recorder {
    /// Queues a batch; never blocks. Over the bound, the batch is dropped and counted.
    pub fn send(&self, batch: Vec<Finished>) {
        let n = batch.len();
        if n == 0 {
            return;
        }
        let waiting = self.queued.fetch_add(n, Ordering::Relaxed);
        let refused = if waiting + n <= QUEUE {
            match self.tx.try_send(batch) {
                Ok(()) => return,
                Err(e) => e.into_inner(),
            }
        } else {
            batch
        };
        self.queued.fetch_sub(n, Ordering::Relaxed);
        self.ledger
            .missed(refused.iter().filter(|f| !f.stored).count());
        let before = self.dropped.fetch_add(n as u64, Ordering::Relaxed);
        let after = before + n as u64;
        // Warn when the count passes a power of two: often at first, rarely under a flood.
        if before.checked_ilog2() != after.checked_ilog2() {
            tracing::warn!(dropped = after, "the recorder is behind; records dropped");
        }
    }

    /// An empty vector for a worker's next batch, with room for `room` records: one the
    /// recorder emptied when it has one.
    pub fn empty_batch(&self, room: usize) -> Vec<Finished> {
        if room == 0 {
            return Vec::new();
        }
        match self.spares.try_recv() {
            Ok(mut spare) => {
                spare.reserve(room);
                spare
            }
            Err(_) => Vec::with_capacity(room),
        }
    }

    /// Records dropped because the recorder was behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Records waiting for the recorder.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }
}

/// Where the recorder sends what it derives from each record.
pub struct Destinations {
    pub access_log: AccessLogTarget,
    pub metrics: Arc<Metrics>,
    pub ledger: Ledger,
    pub audit: AuditLog,
    pub exporter: Option<Exporter>,
}

/// Starts the recorder thread, scheduled as `priority` says; it folds every record into the
/// metrics, so it runs even when the access log is off. Dropping every [`Recorder`] clone
/// ends it.
pub fn start(
    to: Destinations,
    priority: WriterPriority,
) -> std::io::Result<(Recorder, JoinHandle<()>)> {
    let sink: Option<Box<dyn Write + Send>> = match &to.access_log {
        AccessLogTarget::Off => None,
        AccessLogTarget::Stdout => Some(Box::new(std::io::stdout())),
        AccessLogTarget::File(path) => Some(Box::new(
            OpenOptions::new().create(true).append(true).open(path)?,
        )),
    };
    let (tx, rx) = flume::unbounded::<Vec<Finished>>();
    let (spares_tx, spares) = flume::bounded(SPARE_BATCHES);
    let queued = Arc::new(AtomicUsize::new(0));
    let recorder = Recorder {
        tx,
        queued: Arc::clone(&queued),
        dropped: Arc::new(AtomicU64::new(0)),
        ledger: to.ledger.clone(),
        spares,
    };
    let mut writer = Writer {
        out: sink.map(|sink| BufWriter::with_capacity(64 * 1024, sink)),
        collector: Collector::new(Arc::clone(&to.metrics)),
        ledger: to.ledger,
        audit: to.audit,
        exporter: to.exporter,
        queued,
        spares: spares_tx,
        line: Vec::with_capacity(4096),
    };
    let handle = std::thread::Builder::new()
        .name("sluice-recorder".into())
        .spawn(move || writer.run(&rx, WriterPacing::start("recorder", priority)))?;
    Ok((recorder, handle))
}

/// How often the recorder drains the queue. Workers never wake it: a wake per batch would
/// cost a futex call and a context switch.
const DRAIN_INTERVAL: Duration = Duration::from_millis(10);

/// The recorder thread's state.
struct Writer {
    out: Option<BufWriter<Box<dyn Write + Send>>>,
    collector: Collector,
    ledger: Ledger,
    audit: AuditLog,
    exporter: Option<Exporter>,
    queued: Arc<AtomicUsize>,
    /// Where emptied batch vectors go back to the workers (when it has room; else freed).
    spares: flume::Sender<Vec<Finished>>,
    /// The line being written (kept: its capacity is reused).
    line: Vec<u8>,
}

impl Writer {
    fn run(&mut self, rx: &flume::Receiver<Vec<Finished>>, mut pacing: WriterPacing) {
        let mut batches: Vec<Vec<Finished>> = Vec::new();
        let mut records: Vec<AccessRecord> = Vec::new();
        let mut stored: Vec<bool> = Vec::new();
        loop {
            let closed = super::drain(rx, &mut batches);
            for mut batch in batches.drain(..) {
                self.queued.fetch_sub(batch.len(), Ordering::Relaxed);
                for finished in batch.drain(..) {
                    records.push(finished.record);
                    stored.push(finished.stored);
                }
                // A vector that grew past a batch, or one the spares have no room for, is
                // freed here.
                if batch.capacity() <= worker::BATCH {
                    let _ = self.spares.try_send(batch);
                }
            }
            self.log(&records);
            self.collector.observe(&records);
            self.audit_requests(&records, &stored);
            self.store_and_export(&mut records, &mut stored);
            super::release_burst(&mut batches, super::KEEP_RECORDS);
            super::release_burst(&mut records, super::KEEP_RECORDS);
            super::release_burst(&mut stored, super::KEEP_RECORDS);
            if closed {
                return;
            }
            pacing.sleep(DRAIN_INTERVAL);
        }
    }

    /// Hands the audit writer the decisions on the requests it does not have yet, in one
    /// message, their fields written here from the records.
    fn audit_requests(&self, records: &[AccessRecord], stored: &[bool]) {
        if !self.audit.is_on() {
            return;
        }
        let mut lines = RequestLines::default();
        for (record, _) in records.iter().zip(stored).filter(|(_, s)| !**s) {
            lines.push(record);
        }
        self.audit.record_requests(lines);
    }

    /// Moves the records to the ledger (those it does not have yet, in one batch) and the
    /// exporter; a record is copied only when both take it.
    fn store_and_export(&self, records: &mut Vec<AccessRecord>, stored: &mut Vec<bool>) {
        let batch = records.drain(..).zip(stored.drain(..));
        if !self.ledger.is_on() {
            if let Some(exporter) = &self.exporter {
                exporter.offer(batch.map(|(record, _)| record));
            }
            return;
        }
        let mut to_store = Vec::with_capacity(batch.len());
        match &self.exporter {
            Some(exporter) => exporter.offer(batch.map(|(record, stored)| {
                if !stored {
                    to_store.push(record.clone());
                }
                record
            })),
            None => to_store.extend(batch.filter(|(_, stored)| !stored).map(|(r, _)| r)),
        }
        self.ledger.record_all(to_store);
    }

    fn log(&mut self, records: &[AccessRecord]) {
        let Some(out) = self.out.as_mut().filter(|_| !records.is_empty()) else {
            return;
        };
        for record in records {
            self.line.clear();
            line::write_line(&mut self.line, record);
            if let Err(e) = out.write_all(&self.line) {
                tracing::error!(error = %e, "cannot write the access log");
                break;
            }
        }
        if let Err(e) = out.flush() {
            tracing::error!(error = %e, "cannot write the access log");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test set-up")]

    use super::*;

    /// A batch of `n` empty records in a vector with room for `room`.
    fn records(n: usize, room: usize) -> Vec<Finished> {
        let mut batch = Vec::with_capacity(room);
        batch.extend((0..n).map(|_| Finished {
            record: AccessRecord::default(),
            stored: false,
        }));
        batch
    }

    #[test]
    fn an_emptied_batch_goes_back_for_a_workers_next_one() {
        let destinations = Destinations {
            access_log: AccessLogTarget::Off,
            metrics: Arc::new(Metrics::default()),
            ledger: Ledger::off(),
            audit: AuditLog::off(),
            exporter: None,
        };
        let (recorder, thread) = start(destinations, WriterPriority::Normal).unwrap();
        let batch = records(3, 3);
        let sent = batch.as_ptr();
        recorder.send(batch);
        let spare = recorder
            .spares
            .recv_timeout(Duration::from_secs(5))
            .unwrap();
        assert!(spare.is_empty());
        assert_eq!(spare.as_ptr(), sent, "the same vector, emptied");
        assert!(spare.capacity() >= 3);
        // A vector that grew past a batch is not kept.
        recorder.send(records(1, worker::BATCH + 1));
        let small = records(1, 1);
        let kept = small.as_ptr();
        recorder.send(small);
        let spare = recorder
            .spares
            .recv_timeout(Duration::from_secs(5))
            .unwrap();
        assert_eq!(
            spare.as_ptr(),
            kept,
            "the grown vector was freed, not handed back"
        );
        drop(recorder);
        thread.join().unwrap();
    }
}
