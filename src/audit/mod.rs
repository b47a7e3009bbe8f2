//! The audit log: append-only JSON lines, one per request decision (and, later, per admin
//! action), each carrying `seq` and the SHA-256 of the line before it, so an altered, inserted
//! or removed line breaks the chain at that point ([`verify`], `sluice audit verify FILE…`).
//! A dedicated thread writes it (fed by a bounded channel, drained on a tick) and continues the
//! chain across restarts and size-based rotation (`FILE` is renamed `FILE.<seq of its first line,
//! 12 digits>`: unique, and sorting the names sorts the files). No bodies
//! and no secrets go in: identities are labels, never keys.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::json::write::Object;

use crate::runtime::writer_priority::{WriterPacing, WriterPriority};

const QUEUE: usize = 65_536;
const TICK: Duration = Duration::from_millis(10);
/// The `prev` of the very first line.
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One audited decision.
#[derive(Clone, Debug, Serialize)]
pub struct AuditEvent {
    /// `request` (later also `admin`).
    pub kind: &'static str,
    #[serde(serialize_with = "rfc3339")]
    pub time: SystemTime,
    pub request_id: String,
    pub identity: String,
    /// `allowed` or `refused`.
    pub decision: &'static str,
    pub status: u16,
    /// sluice's error label when it refused or failed the request.
    pub reason: Option<&'static str>,
    pub format: &'static str,
    pub model: Option<std::sync::Arc<str>>,
    pub upstream: Option<std::sync::Arc<str>>,
    pub fallbacks: Vec<String>,
    /// What a non-request event is about (e.g. which budget's soft threshold was crossed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl AuditEvent {
    /// The decision on a request, from its access record.
    pub fn request(r: &crate::record::AccessRecord) -> Self {
        Self {
            kind: "request",
            time: r.time,
            request_id: r.request_id.to_string(),
            identity: r.caller.label().to_string(),
            decision: request_decision(r),
            status: r.status,
            reason: r.error,
            format: r.format.label(),
            model: r.model.clone(),
            upstream: r.upstream.clone(),
            fallbacks: r.fallbacks.clone(),
            detail: None,
        }
    }

    /// A sign-in decision about `email` (empty when not known): `signed_in`, `refused`,
    /// `denied_by_user`, `signed_out`.
    pub fn signin(
        decision: &'static str,
        email: &str,
        reason: Option<&'static str>,
        detail: Option<String>,
    ) -> Self {
        Self {
            kind: "signin",
            time: SystemTime::now(),
            request_id: String::new(),
            identity: if email.is_empty() {
                "anonymous".into()
            } else {
                format!("user:{email}")
            },
            decision,
            status: 0,
            reason,
            format: "",
            model: None,
            upstream: None,
            fallbacks: Vec::new(),
            detail,
        }
    }

    /// An administrative action on `subject` (e.g. `key_created` on a key name).
    pub fn admin(action: &'static str, subject: &str) -> Self {
        Self {
            kind: "admin",
            time: SystemTime::now(),
            request_id: String::new(),
            identity: format!("key:{subject}"),
            decision: action,
            status: 0,
            reason: None,
            format: "",
            model: None,
            upstream: None,
            fallbacks: Vec::new(),
            detail: None,
        }
    }
}

impl AuditEvent {
    /// A config change (`config_reloaded`, `config_reload_failed`) with its origin and outcome.
    pub fn config(action: &'static str, detail: String) -> Self {
        let mut event = Self::admin(action, "");
        event.identity = "config".into();
        event.detail = Some(detail);
        event
    }
}

fn rfc3339<S: serde::Serializer>(time: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_rfc3339_micros(*time))
}

/// The chained line as written: `seq`, `prev`, the cluster node that wrote it (each node keeps
/// its own chain), then the event's fields — the bytes serde_json writes for them (see the
/// tests), written without serde ([`crate::json::write`]).
fn write_line(out: &mut Vec<u8>, seq: u64, prev: &str, node: Option<&str>, e: &AuditEvent) {
    write_chain_head(out, seq, prev, node);
    let mut o = Object::continuing(out);
    write_event_fields(&mut o, e);
    o.close();
}

/// A line's first members, `{"seq":…,"prev":…` and `"node"` when there is one; the event's
/// fields follow, each after a comma.
fn write_chain_head(out: &mut Vec<u8>, seq: u64, prev: &str, node: Option<&str>) {
    let mut o = Object::open(out);
    o.u64("seq", seq);
    o.str("prev", prev);
    if let Some(node) = node {
        o.str("node", node);
    }
}

fn write_event_fields(o: &mut Object<'_>, e: &AuditEvent) {
    o.str("kind", e.kind);
    o.time("time", e.time);
    o.str("request_id", &e.request_id);
    o.str("identity", &e.identity);
    o.str("decision", e.decision);
    o.u64("status", u64::from(e.status));
    o.opt_str("reason", e.reason);
    o.str("format", e.format);
    o.opt_str("model", e.model.as_deref());
    o.opt_str("upstream", e.upstream.as_deref());
    o.strs("fallbacks", &e.fallbacks);
    if let Some(detail) = &e.detail {
        o.str("detail", detail);
    }
}

/// [`AuditEvent::request`]'s fields, written from the record itself: the same bytes, without
/// building the event (which copies four strings).
fn write_request_fields(o: &mut Object<'_>, r: &crate::record::AccessRecord) {
    o.str("kind", "request");
    o.time("time", r.time);
    o.str("request_id", &r.request_id);
    o.str("identity", r.caller.label());
    o.str("decision", request_decision(r));
    o.u64("status", u64::from(r.status));
    o.opt_str("reason", r.error);
    o.str("format", r.format.label());
    o.opt_str("model", r.model.as_deref());
    o.opt_str("upstream", r.upstream.as_deref());
    o.strs("fallbacks", &r.fallbacks);
}

/// A request was allowed when it succeeded or reached an upstream.
fn request_decision(r: &crate::record::AccessRecord) -> &'static str {
    if r.status < 400 || r.upstream.is_some() {
        "allowed"
    } else {
        "refused"
    }
}

/// Finished requests' audit fields, written by the recorder straight from their records and
/// handed to the writer in one message per batch; the writer puts each after its line's `seq`,
/// `prev` and `node`.
#[derive(Default)]
pub struct RequestLines {
    /// Each request's fields, `,"kind":…}`, one after another.
    bytes: Vec<u8>,
    /// Where each request's fields end in `bytes`.
    ends: Vec<usize>,
}

impl RequestLines {
    /// Adds the decision on `r` (as [`AuditEvent::request`] describes it).
    pub fn push(&mut self, r: &crate::record::AccessRecord) {
        let mut o = Object::continuing(&mut self.bytes);
        write_request_fields(&mut o, r);
        o.close();
        self.ends.push(self.bytes.len());
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Each request's fields, in order.
    fn iter(&self) -> impl Iterator<Item = &[u8]> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(self.ends.iter().copied())
            .filter_map(|(start, end)| self.bytes.get(start..end))
    }
}

/// The workers' handle on the audit log.
#[derive(Clone)]
pub struct AuditLog {
    tx: Option<flume::Sender<Queued>>,
    /// Events waiting for the writer (a message may hold a batch of requests).
    queued: Arc<AtomicUsize>,
    dropped: Arc<AtomicU64>,
}

/// What goes to the writer.
enum Queued {
    /// An event, and who waits for it to be on disk (sync mode).
    Event {
        event: AuditEvent,
        ack: Option<flume::Sender<()>>,
    },
    /// The recorder's batch of finished requests.
    Requests(RequestLines),
}

impl AuditLog {
    pub fn off() -> Self {
        Self {
            tx: None,
            queued: Arc::new(AtomicUsize::new(0)),
            dropped: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Events waiting for the writer thread.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Events dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Whether events are being written at all.
    pub fn is_on(&self) -> bool {
        self.tx.is_some()
    }

    /// Queues an event; never blocks.
    pub fn record(&self, event: AuditEvent) {
        self.enqueue(event, None);
    }

    /// Queues an event and returns what resolves once its line is written and synced (`None`:
    /// the audit log is off or its queue is full).
    pub fn record_and_wait(&self, event: AuditEvent) -> Option<flume::Receiver<()>> {
        let (tx, rx) = flume::bounded(1);
        self.enqueue(event, Some(tx)).then_some(rx)
    }

    /// Queues the recorder's batch of request decisions; never blocks.
    pub fn record_requests(&self, lines: RequestLines) {
        let n = lines.len();
        if n > 0 {
            self.send(Queued::Requests(lines), n);
        }
    }

    fn enqueue(&self, event: AuditEvent, ack: Option<flume::Sender<()>>) -> bool {
        self.send(Queued::Event { event, ack }, 1)
    }

    /// Sends `n` events in one message, or counts them dropped when the queue is full.
    fn send(&self, queued: Queued, n: usize) -> bool {
        let Some(tx) = &self.tx else { return false };
        self.queued.fetch_add(n, Ordering::Relaxed);
        if tx.try_send(queued).is_err() {
            self.queued.fetch_sub(n, Ordering::Relaxed);
            let before = self.dropped.fetch_add(n as u64, Ordering::Relaxed);
            // Said when the count passes a power of two: often at first, rarely under a flood.
            if before.checked_ilog2() != (before + n as u64).checked_ilog2() {
                tracing::error!(
                    dropped = before + n as u64,
                    "audit log queue full: events not written"
                );
            }
            return false;
        }
        true
    }
}

/// Opens the audit log at `path` (continuing its chain) and starts the writer thread, scheduled
/// as `priority` says. With `sync`, the writer wakes on each event, syncs what it wrote, and
/// acknowledges waiters (and so always runs at the normal policy).
pub fn start(
    path: &Path,
    max_bytes: u64,
    sync: bool,
    priority: WriterPriority,
    node: Option<String>,
) -> std::io::Result<(AuditLog, JoinHandle<()>)> {
    let (seq, prev, first_seq) = chain_tail(path)?;
    let file = OpenOptions::new().create(true).append(true).open(path)?;
    let (tx, rx) = flume::bounded::<Queued>(QUEUE);
    let queued = Arc::new(AtomicUsize::new(0));
    let size = std::fs::metadata(path).map_or(0, |m| m.len());
    let mut writer = Writer {
        queued: Arc::clone(&queued),
        path: path.to_path_buf(),
        file,
        size,
        written: size,
        max_bytes,
        seq,
        prev,
        first_seq,
        sync,
        node,
        pending: Vec::new(),
        waiting: Vec::new(),
        line: Vec::with_capacity(1024),
    };
    let handle = std::thread::Builder::new()
        .name("sluice-audit".into())
        .spawn(move || {
            let priority = if sync {
                WriterPriority::Normal
            } else {
                priority
            };
            writer.run(rx, WriterPacing::start("audit", priority));
        })?;
    Ok((
        AuditLog {
            tx: Some(tx),
            queued,
            dropped: Arc::new(AtomicU64::new(0)),
        },
        handle,
    ))
}

struct Writer {
    /// Events sent and not yet taken (shared with the [`AuditLog`] handles).
    queued: Arc<AtomicUsize>,
    path: PathBuf,
    file: File,
    /// Bytes of the current file, counting the pending lines.
    size: u64,
    /// Bytes of the current file known to be written.
    written: u64,
    max_bytes: u64,
    /// The next line's sequence number.
    seq: u64,
    /// The hash of the last line (pending or written).
    prev: String,
    /// The `seq` of the current file's first line (names the file when it is rotated).
    first_seq: u64,
    /// Sync after each write and acknowledge waiters (`store.durability = "sync"`).
    sync: bool,
    /// The cluster node id written in every line.
    node: Option<String>,
    /// Chained lines not yet written: kept across failed writes (a full disk) and retried, so
    /// the chain on disk never has a gap or half a line.
    pending: Vec<u8>,
    /// Who waits for the pending lines (sync mode).
    waiting: Vec<flume::Sender<()>>,
    /// The line being written (kept: its capacity is reused).
    line: Vec<u8>,
}

/// Pending bytes beyond which the writer stops taking events from the queue (they wait there,
/// and past the queue's bound are counted as dropped).
const MAX_PENDING: usize = 8 << 20;
/// Bytes of written lines the writer keeps room for between ticks (a tick's worth of ~500-byte
/// lines at full load); what a backlog grew beyond it is given back once written.
const KEEP_PENDING: usize = 512 << 10;

impl Writer {
    fn run(&mut self, rx: flume::Receiver<Queued>, mut pacing: WriterPacing) {
        let mut failing = false;
        loop {
            let mut closed = false;
            if self.sync && self.pending.is_empty() {
                // Someone may be waiting: wake on the first event, not on a timer.
                match rx.recv_timeout(TICK) {
                    Ok(q) => self.take(q),
                    Err(flume::RecvTimeoutError::Timeout) => continue,
                    Err(flume::RecvTimeoutError::Disconnected) => closed = true,
                }
            }
            while !closed && self.pending.len() < MAX_PENDING {
                match rx.try_recv() {
                    Ok(q) => self.take(q),
                    Err(flume::TryRecvError::Empty) => break,
                    Err(flume::TryRecvError::Disconnected) => closed = true,
                }
            }
            match self.flush() {
                Ok(()) => {
                    if failing {
                        tracing::warn!("the audit log is writable again");
                    }
                    failing = false;
                }
                Err(e) if !failing => {
                    failing = true;
                    tracing::error!(error = %e, pending = self.pending.len(), "cannot write the audit log; keeping the lines and retrying");
                }
                Err(_) => {}
            }
            if closed {
                let _ = self.flush();
                let _ = self.file.sync_all();
                return;
            }
            if !self.sync || !self.pending.is_empty() {
                pacing.sleep(TICK);
            }
        }
    }

    fn take(&mut self, q: Queued) {
        match q {
            Queued::Event { event, ack } => {
                self.queued.fetch_sub(1, Ordering::Relaxed);
                self.append(&event);
                self.waiting.extend(ack);
            }
            Queued::Requests(lines) => {
                self.queued.fetch_sub(lines.len(), Ordering::Relaxed);
                for fields in lines.iter() {
                    self.append_fields(fields);
                }
            }
        }
    }

    /// Writes the pending lines (synced in sync mode) and acknowledges their waiters; on a
    /// failure, cuts off whatever part of them reached the file and keeps them pending.
    fn flush(&mut self) -> std::io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let written = self.file.write_all(&self.pending).and_then(|()| {
            if self.sync {
                self.file.sync_data()
            } else {
                Ok(())
            }
        });
        match written {
            Ok(()) => {
                self.pending.clear();
                crate::store::release_burst(&mut self.pending, KEEP_PENDING);
                self.written = self.size;
                for ack in self.waiting.drain(..) {
                    let _ = ack.send(());
                }
                Ok(())
            }
            Err(e) => {
                let _ = self.file.set_len(self.written);
                Err(e)
            }
        }
    }

    fn append(&mut self, event: &AuditEvent) {
        self.line.clear();
        write_line(
            &mut self.line,
            self.seq,
            &self.prev,
            self.node.as_deref(),
            event,
        );
        self.chain_line();
    }

    /// Appends a line of the chain's head and `fields` (a request's, from [`RequestLines`]).
    fn append_fields(&mut self, fields: &[u8]) {
        self.line.clear();
        write_chain_head(&mut self.line, self.seq, &self.prev, self.node.as_deref());
        self.line.extend_from_slice(fields);
        self.chain_line();
    }

    /// Chains the line just written into `line`: rotates first if it would not fit, then
    /// hashes it for the next line's `prev` and queues it to be written.
    fn chain_line(&mut self) {
        let len = self.line.len() as u64 + 1;
        if self.size + len > self.max_bytes && self.size > 0 {
            self.rotate();
        }
        crate::digest::sha256_hex_into(&self.line, &mut self.prev);
        self.seq += 1;
        self.pending.extend_from_slice(&self.line);
        self.pending.push(b'\n');
        self.size += len;
    }

    /// Writes what is pending to the current file, then starts a new one (the chain goes on).
    /// If that fails the current file simply grows past its limit for now.
    fn rotate(&mut self) {
        if self.flush().is_err() {
            return;
        }
        // Named by the first line's seq, zero-padded: unique (two rotations in one millisecond
        // must not overwrite each other) and in chain order when sorted by name.
        let rotated = PathBuf::from(format!("{}.{:020}", self.path.display(), self.first_seq));
        let done = self
            .file
            .sync_all()
            .and_then(|()| std::fs::rename(&self.path, &rotated))
            .and_then(|()| {
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)
            });
        match done {
            Ok(file) => {
                self.file = file;
                self.size = 0;
                self.written = 0;
                self.first_seq = self.seq;
            }
            Err(e) => tracing::error!(error = %e, "cannot rotate the audit log"),
        }
    }
}

/// The next `seq`, the last line's hash and the first line's `seq` of an existing log (so the
/// chain continues).
fn chain_tail(path: &Path) -> std::io::Result<(u64, String, u64)> {
    let Ok(file) = File::open(path) else {
        return Ok((0, GENESIS.to_string(), 0));
    };
    let seq_of = |line: &str| {
        serde_json::from_str::<serde_json::Value>(line)
            .ok()
            .and_then(|v| v["seq"].as_u64())
    };
    let (mut first, mut last) = (None, None);
    for line in BufReader::new(file).lines() {
        let line = line?;
        if !line.is_empty() {
            first.get_or_insert_with(|| line.clone());
            last = Some(line);
        }
    }
    let Some(last) = last else {
        return Ok((0, GENESIS.to_string(), 0));
    };
    let next = seq_of(&last).map_or(0, |s| s + 1);
    let first_seq = first.as_deref().and_then(seq_of).unwrap_or(next);
    Ok((next, crate::digest::sha256_hex(last.as_bytes()), first_seq))
}

/// The first break in a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Break {
    pub file: String,
    pub line: usize,
    pub problem: String,
}

/// Verifies `files` (oldest first) as one chain. `Ok(lines)` when intact.
pub fn verify(files: &[PathBuf]) -> Result<usize, Break> {
    let mut expected_seq: Option<u64> = None;
    let mut prev: Option<String> = None;
    let mut count = 0;
    for file in files {
        let name = file.display().to_string();
        let fail = |line: usize, problem: String| Break {
            file: name.clone(),
            line,
            problem,
        };
        let text =
            std::fs::read_to_string(file).map_err(|e| fail(0, format!("cannot read: {e}")))?;
        for (i, line) in text.lines().enumerate() {
            let n = i + 1;
            let v: serde_json::Value = serde_json::from_str(line)
                .map_err(|_| fail(n, "not a JSON line (altered)".into()))?;
            let seq = v["seq"]
                .as_u64()
                .ok_or_else(|| fail(n, "no seq (altered or inserted)".into()))?;
            let line_prev = v["prev"].as_str().unwrap_or_default();
            if let Some(want) = expected_seq {
                if seq != want {
                    let what = if seq > want {
                        "missing line(s) before it"
                    } else {
                        "inserted or repeated line"
                    };
                    return Err(fail(n, format!("seq {seq}, expected {want}: {what}")));
                }
            }
            match &prev {
                Some(p) if p != line_prev => {
                    return Err(fail(n, "does not chain to the line before it: that line was altered, or this one inserted".into()))
                }
                None if seq != 0 || line_prev != GENESIS => {
                    return Err(fail(n, format!("the chain does not start here (seq {seq}): earlier files are missing or the line was altered")))
                }
                _ => {}
            }
            prev = Some(crate::digest::sha256_hex(line.as_bytes()));
            expected_seq = Some(seq + 1);
            count += 1;
        }
    }
    Ok(count)
}

#[cfg(test)]
mod tests;
