//! Optional active health checks. A side thread probes each upstream that sets
//! `health_check_path` every `health_check_interval` (a GET with the upstream's static credential,
//! when it has one) and publishes up or down in atomics that every worker's balancer reads with
//! one load. A 5xx, a failure to connect or a timeout marks the upstream down until a probe
//! succeeds again; passive health (per worker) still applies on top. A prober holds its board
//! weakly and stops once a config reload has retired it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::upstream::Upstream;

/// Up or down, per upstream (index as in the config), as the last probe found it.
#[derive(Debug)]
pub struct HealthBoard {
    up: Vec<AtomicBool>,
}

impl HealthBoard {
    /// All upstreams up.
    pub fn new(upstreams: usize) -> Arc<Self> {
        Arc::new(Self {
            up: (0..upstreams).map(|_| AtomicBool::new(true)).collect(),
        })
    }

    /// Whether upstream `index` passed its last probe (always true without probes).
    pub fn is_up(&self, index: usize) -> bool {
        self.up.get(index).is_none_or(|u| u.load(Ordering::Relaxed))
    }

    fn set(&self, index: usize, up: bool) {
        if let Some(slot) = self.up.get(index) {
            let was = slot.swap(up, Ordering::Relaxed);
            if was != up {
                tracing::warn!(upstream = index, up, "active health check changed state");
            }
        }
    }
}

/// What to probe for one upstream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    pub path: String,
    pub interval: Duration,
}

/// Starts one prober thread per upstream that has a probe.
pub fn start(board: &Arc<HealthBoard>, upstreams: &[Upstream]) {
    for (index, upstream) in upstreams.iter().enumerate() {
        let Some(probe) = upstream.health_probe.clone() else {
            continue;
        };
        // A reload that replaces the upstreams drops the old board: its probers then stop.
        let board = Arc::downgrade(board);
        let url = format!("{}{}", upstream.url(), probe.path);
        let credential = upstream.credential.as_ref().map(|c| {
            let (name, value) = c.header_field();
            (name, value.to_vec())
        });
        let name = upstream.name.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("sluice-health-{index}"))
            .spawn(move || loop {
                let headers: Vec<(&str, String)> = credential
                    .iter()
                    .map(|(n, v)| (*n, String::from_utf8_lossy(v).into_owned()))
                    .collect();
                let headers: Vec<(&str, &str)> =
                    headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
                let up = match super::blocking_http::get(&url, &headers, &[]) {
                    Ok((status, _)) => status < 500,
                    Err(e) => {
                        tracing::debug!(upstream = %name, error = %e, "health probe failed");
                        false
                    }
                };
                let Some(board) = board.upgrade() else {
                    break;
                };
                board.set(index, up);
                drop(board);
                #[expect(clippy::disallowed_methods, reason = "the prober's own thread")]
                std::thread::sleep(probe.interval);
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start a health prober");
        }
    }
}
