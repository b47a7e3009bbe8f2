//! The access log: one JSON line per request, written by a dedicated thread fed by a bounded
//! channel. A worker only ever `try_send`s; if the writer falls behind and the channel is full,
//! the record is counted as dropped and a warning is logged (never a blocked worker). The writer
//! drains the queue every 10 ms rather than being woken per record.
//! Shutdown drops the senders; the writer drains the channel, flushes and exits. The same thread
//! folds each batch into the Prometheus metrics and offers it to the OpenTelemetry exporter.

use std::fs::OpenOptions;
use std::io::{BufWriter, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::config::AccessLogTarget;
use crate::metrics::{Collector, Metrics};
pub use crate::record::AccessRecord;
use crate::runtime::writer_priority::{WriterPacing, WriterPriority};
use crate::telemetry::export::Exporter;

/// Records queued at most before new ones are dropped.
const QUEUE: usize = 65_536;

/// The workers' handle on the access log.
#[derive(Clone)]
pub struct AccessLog {
    tx: Option<flume::Sender<AccessRecord>>,
    dropped: Arc<AtomicU64>,
}

impl AccessLog {
    /// A log that discards everything.
    pub fn off() -> Self {
        Self {
            tx: None,
            dropped: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Queues a record; never blocks.
    pub fn record(&self, record: AccessRecord) {
        let Some(tx) = &self.tx else { return };
        if tx.try_send(record).is_err() {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(dropped = n, "access log writer is behind; records dropped");
            }
        }
    }

    /// Records dropped because the writer was behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Records waiting for the writer thread.
    pub fn queued(&self) -> usize {
        self.tx.as_ref().map_or(0, flume::Sender::len)
    }
}

/// Starts the writer thread for `target`, scheduled as `priority` says; it also folds every
/// record into `metrics`, so it runs even when the log itself is off. Dropping every
/// [`AccessLog`] clone ends it.
pub fn start(
    target: &AccessLogTarget,
    metrics: Arc<Metrics>,
    exporter: Option<Exporter>,
    priority: WriterPriority,
) -> std::io::Result<(AccessLog, JoinHandle<()>)> {
    let sink: Option<Box<dyn Write + Send>> = match target {
        AccessLogTarget::Off => None,
        AccessLogTarget::Stdout => Some(Box::new(std::io::stdout())),
        AccessLogTarget::File(path) => Some(Box::new(
            OpenOptions::new().create(true).append(true).open(path)?,
        )),
    };
    let (tx, rx) = flume::bounded::<AccessRecord>(QUEUE);
    let handle = std::thread::Builder::new()
        .name("sluice-access-log".into())
        .spawn(move || {
            write_loop(
                rx,
                sink,
                metrics,
                exporter,
                WriterPacing::start("access-log", priority),
            )
        })?;
    Ok((
        AccessLog {
            tx: Some(tx),
            dropped: Arc::new(AtomicU64::new(0)),
        },
        handle,
    ))
}

/// How often the writer drains the queue. Workers never wake it: a wake per record would cost
/// every request a futex call and a context switch.
const DRAIN_INTERVAL: Duration = Duration::from_millis(10);

fn write_loop(
    rx: flume::Receiver<AccessRecord>,
    sink: Option<Box<dyn Write + Send>>,
    metrics: Arc<Metrics>,
    exporter: Option<Exporter>,
    mut pacing: WriterPacing,
) {
    let mut collector = Collector::new(metrics);
    let mut out = sink.map(|sink| BufWriter::with_capacity(64 * 1024, sink));
    let mut batch: Vec<AccessRecord> = Vec::new();
    loop {
        let closed = super::drain(&rx, &mut batch);
        if let Some(out) = out.as_mut().filter(|_| !batch.is_empty()) {
            for record in &batch {
                write_record(out, record);
            }
            if let Err(e) = out.flush() {
                tracing::error!(error = %e, "cannot write the access log");
            }
        }
        collector.observe(&batch);
        match &exporter {
            Some(exporter) => exporter.offer(batch.drain(..)),
            None => batch.clear(),
        }
        if closed {
            return;
        }
        pacing.sleep(DRAIN_INTERVAL);
    }
}

fn write_record(out: &mut impl Write, record: &AccessRecord) {
    let written = serde_json::to_writer(&mut *out, record)
        .map_err(std::io::Error::from)
        .and_then(|()| out.write_all(b"\n"));
    if let Err(e) = written {
        tracing::error!(error = %e, "cannot write the access log");
    }
}
