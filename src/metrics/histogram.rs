//! Fixed-bucket latency histograms in the Prometheus shape (cumulative `le` buckets, sum, count).

/// Bucket upper bounds for whole requests, in microseconds: 100 µs to 10 min.
const REQUEST_BOUNDS_US: [u64; 20] = [
    100,
    250,
    500,
    1_000,
    2_500,
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    30_000_000,
    60_000_000,
    120_000_000,
    600_000_000,
];

/// Bucket upper bounds for sluice's own share and upstream TTFB, in microseconds: 5 µs to 60 s.
const FINE_BOUNDS_US: [u64; 22] = [
    5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000,
    500_000, 1_000_000, 2_500_000, 5_000_000, 10_000_000, 30_000_000, 60_000_000,
];

#[derive(Clone, Debug)]
pub struct Histogram {
    bounds_us: &'static [u64],
    /// Per bucket (not cumulative); the last slot is `+Inf`.
    counts: Vec<u64>,
    sum_us: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::with_bounds(&FINE_BOUNDS_US)
    }
}

impl Histogram {
    pub fn for_requests() -> Self {
        Self::with_bounds(&REQUEST_BOUNDS_US)
    }

    fn with_bounds(bounds_us: &'static [u64]) -> Self {
        Self {
            bounds_us,
            counts: vec![0; bounds_us.len() + 1],
            sum_us: 0,
        }
    }

    pub fn observe_us(&mut self, us: u64) {
        let slot = self.bounds_us.partition_point(|&b| b < us);
        if let Some(c) = self.counts.get_mut(slot) {
            *c += 1;
        }
        self.sum_us = self.sum_us.saturating_add(us);
    }

    /// `(upper bound in seconds or None for +Inf, cumulative count)` per bucket.
    pub fn cumulative(&self) -> impl Iterator<Item = (Option<f64>, u64)> + '_ {
        let mut running = 0;
        self.counts.iter().enumerate().map(move |(i, c)| {
            running += c;
            let bound = self.bounds_us.get(i).map(|&us| us as f64 / 1e6);
            (bound, running)
        })
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    pub fn sum_seconds(&self) -> f64 {
        self.sum_us as f64 / 1e6
    }
}
