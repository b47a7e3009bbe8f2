//! The running config and state, replaceable while sluice serves. A reload publishes a new
//! [`Snapshot`] and then moves the generation on; each worker compares the generation with the
//! one it last saw (one atomic load per request) and rebuilds its gateway from the new snapshot
//! when it moved. Requests in flight finish on the snapshot they started with.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

use super::State;
use crate::config::Config;

/// A config and the state built for it.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub config: Arc<Config>,
    pub state: Arc<State>,
}

impl Snapshot {
    pub fn new(config: Config, state: State) -> Self {
        Self {
            config: Arc::new(config),
            state: Arc::new(state),
        }
    }
}

#[derive(Debug)]
pub struct Live {
    current: ArcSwap<Snapshot>,
    generation: AtomicU64,
}

impl Live {
    pub fn new(snapshot: Snapshot) -> Arc<Self> {
        Arc::new(Self {
            current: ArcSwap::from_pointee(snapshot),
            generation: AtomicU64::new(0),
        })
    }

    /// The snapshot to serve new requests with.
    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// How many reloads have been published.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Makes `snapshot` the running one; returns its generation.
    pub fn publish(&self, snapshot: Snapshot) -> u64 {
        self.current.store(Arc::new(snapshot));
        self.generation.fetch_add(1, Ordering::AcqRel) + 1
    }
}
