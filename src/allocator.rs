//! The process's allocator: mimalloc, told to give a page back to the kernel as soon as it
//! empties.
//!
//! By default mimalloc keeps an emptied page for a second (its purge delay) in case it is
//! wanted again. sluice's heap turns over fast — request buffers on the workers, record batches
//! handed from the workers to the writer threads and freed there — and under load a second's
//! worth of emptied pages is several MiB that belong to no live allocation: two thirds of the
//! anonymous memory after a c=50 load (`tuning/profile.md`: Memory). Giving them back at once
//! costs an `madvise` per emptied page, and a page fault for each page touched again; the
//! workers keep what they reuse per request (`proxy::request_slots`, `proxy::spare_buffers`),
//! so that is rare. An operator who sets `MIMALLOC_PURGE_DELAY` keeps their setting.
//!
//! The one use of `unsafe` in sluice (style.md allows a documented, tested exception): setting
//! an option is a call into mimalloc's C API, which the `mimalloc` crate does not wrap.

use std::ffi::c_long;

use libmimalloc_sys::mi_option_t;
use mimalloc::MiMalloc;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

/// mimalloc's `mi_option_purge_delay` (its place in `mi_option_e`, `mimalloc.h`, the same in
/// versions 2 and 3); `libmimalloc-sys` has no constant for it.
const PURGE_DELAY: mi_option_t = 15;
/// The environment variable by which an operator sets the purge delay (milliseconds).
const PURGE_DELAY_VARIABLE: &str = "MIMALLOC_PURGE_DELAY";

/// Makes the allocator give emptied pages back at once, unless the environment sets the
/// delay. Called first in `main`, before any other thread exists (mimalloc's options are not
/// synchronized).
pub fn give_back_emptied_pages() {
    if std::env::var_os(PURGE_DELAY_VARIABLE).is_none() {
        set_purge_delay_ms(0);
    }
}

#[expect(
    unsafe_code,
    reason = "mimalloc's option setter is C; its arguments are plain integers"
)]
fn set_purge_delay_ms(ms: c_long) {
    // SAFETY: `mi_option_set` stores an integer in mimalloc's option table; PURGE_DELAY is a
    // valid option and any value is allowed (negative: never purge). The caller runs before
    // other threads, so nothing reads the table concurrently.
    unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, ms) }
}

/// The purge delay in force, in milliseconds.
#[cfg(test)]
#[expect(unsafe_code, reason = "mimalloc's option getter is C")]
fn purge_delay_ms() -> c_long {
    // SAFETY: `mi_option_get` reads an integer from mimalloc's option table; PURGE_DELAY is a
    // valid option.
    unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emptied_pages_are_given_back_at_once() {
        assert!(
            std::env::var_os(PURGE_DELAY_VARIABLE).is_none(),
            "run without {PURGE_DELAY_VARIABLE} set"
        );
        // mimalloc 3's default: this is the option meant (a wrong index reads another one).
        assert_eq!(purge_delay_ms(), 1000);
        give_back_emptied_pages();
        assert_eq!(purge_delay_ms(), 0);
    }
}
