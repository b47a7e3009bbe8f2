//! Records that leave the hot path: workers hand them to writer threads over bounded channels
//! and never wait on disk: the recorder ([`recorder`]: the access log, metrics, and the feed of
//! the audit log and the spend ledger ([`ledger`])).
//! The writers run under `SCHED_IDLE` while they keep up, so they never delay a waking worker
//! ([`crate::runtime::writer_priority`]).

pub mod connecting;
pub mod keys;
pub mod ledger;
pub mod outbox;
pub mod policies;
pub mod postgres;
pub mod recorder;

/// Where issued keys and admin-set policies live (and, in a cluster, every node's spend).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// The one node's SQLite file.
    Sqlite(std::path::PathBuf),
    /// The cluster's PostgreSQL (its connection string).
    Postgres(String),
}

impl StoreLocation {
    /// Where `config` keeps them (`None`: `store.path = "off"`, no store).
    pub fn of(config: &crate::config::Config) -> Option<StoreLocation> {
        match (&config.cluster, &config.store.path) {
            (Some(cluster), _) => Some(StoreLocation::Postgres(cluster.postgres.clone())),
            (None, Some(path)) => Some(StoreLocation::Sqlite(path.clone())),
            (None, None) => None,
        }
    }

    /// The same, from the file as written (before it is built).
    pub fn of_file(file: &crate::config::file::FileConfig) -> Option<StoreLocation> {
        match (&file.cluster, file.store.path.as_str()) {
            (Some(cluster), _) => Some(StoreLocation::Postgres(cluster.postgres.clone())),
            (None, "off") => None,
            (None, path) => Some(StoreLocation::Sqlite(path.into())),
        }
    }
}

/// Records a writer keeps room for between its ticks: more than a tick's worth at full load
/// (two workers at ~30,000 requests per second each, every 10 ms).
pub(crate) const KEEP_RECORDS: usize = 1024;

/// Gives back what a burst made `buffer` grow to once it has been written (it is empty), keeping
/// room for `keep` items: a writer that fell behind once would otherwise hold its largest
/// backlog's capacity for good (about 700 bytes per record).
pub(crate) fn release_burst<T>(buffer: &mut Vec<T>, keep: usize) {
    if buffer.is_empty() && buffer.capacity() > keep {
        buffer.shrink_to(keep);
    }
}

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

#[cfg(test)]
mod tests {
    use super::release_burst;

    #[test]
    fn a_written_burst_gives_its_room_back() {
        let mut buffer: Vec<u64> = (0..10_000).collect();
        release_burst(&mut buffer, 1024);
        assert_eq!(
            buffer.len(),
            10_000,
            "a buffer still holding records is left alone"
        );
        buffer.clear();
        release_burst(&mut buffer, 1024);
        assert!(buffer.capacity() >= 1024 && buffer.capacity() < 10_000);
        let mut small: Vec<u64> = Vec::with_capacity(100);
        release_burst(&mut small, 1024);
        assert_eq!(small.capacity(), 100, "a buffer within its room keeps it");
    }
}
