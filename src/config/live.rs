//! The running config, replaceable while sluice serves. A reload publishes a new [`Config`]
//! and then moves the generation on; each worker compares the generation with the one it last
//! saw (one atomic load per request) and rebuilds its gateway from the new config when it moved.
//! Requests in flight finish on the config they started with.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

use super::Config;

#[derive(Debug)]
pub struct LiveConfig {
    current: ArcSwap<Config>,
    generation: AtomicU64,
}

impl LiveConfig {
    pub fn new(config: Config) -> Arc<Self> {
        Arc::new(Self {
            current: ArcSwap::from_pointee(config),
            generation: AtomicU64::new(0),
        })
    }

    /// The config to serve new requests with.
    pub fn load(&self) -> Arc<Config> {
        self.current.load_full()
    }

    /// How many reloads have been published.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Makes `config` the running config; returns its generation.
    pub fn publish(&self, config: Config) -> u64 {
        self.current.store(Arc::new(config));
        self.generation.fetch_add(1, Ordering::AcqRel) + 1
    }
}
