//! Request-head values a record keeps — the user agent, Claude Code's session and agent ids,
//! the managed-settings checksum — shared rather than copied. A client sends the same ones on
//! request after request, so each worker remembers the values it saw recently and hands each
//! request a reference to the one it holds: no allocation per request for them, and nothing to
//! free on the writer threads. Model names are shared the same way ([`super::route`]). Bounded:
//! past [`LIMIT`] different values it starts over.

use std::cell::RefCell;
use std::sync::Arc;

use hashbrown::HashSet;

/// Different values remembered at most (each at most 128 characters, as recorded).
pub const LIMIT: usize = 256;

/// One worker's recently seen values.
#[derive(Default)]
pub struct RecentValues {
    seen: RefCell<HashSet<Arc<str>>>,
}

impl RecentValues {
    /// `value`, shared with every other request that sent the same.
    pub fn share(&self, value: &str) -> Arc<str> {
        let mut seen = self.seen.borrow_mut();
        if let Some(known) = seen.get(value) {
            return Arc::clone(known);
        }
        if seen.len() >= LIMIT {
            *seen = HashSet::new();
        }
        let value: Arc<str> = Arc::from(value);
        seen.insert(Arc::clone(&value));
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_value_is_shared() {
        let recent = RecentValues::default();
        let a = recent.share("claude-cli/2.0.14 (external, cli)");
        let b = recent.share("claude-cli/2.0.14 (external, cli)");
        let other = recent.share("python-httpx/0.28");
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(&*other, "python-httpx/0.28");
    }

    #[test]
    fn memory_is_bounded_by_distinct_values() {
        let recent = RecentValues::default();
        for i in 0..LIMIT * 3 {
            assert_eq!(&*recent.share(&format!("agent {i}")), format!("agent {i}"));
            assert!(recent.seen.borrow().len() <= LIMIT);
        }
    }
}
