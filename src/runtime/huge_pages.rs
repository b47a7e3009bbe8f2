//! Transparent huge pages off for the whole process. The allocator's heap is a reserved
//! region that the kernel would otherwise back with 2 MiB pages (mimalloc advises them, and a
//! kernel set to `always` uses them unasked): an idle gateway then holds a whole huge page per
//! thread that touched the heap — about 8 MiB of a 9 MiB heap at idle, half of it under load —
//! for memory it never uses. sluice's heap is small and short-lived (per-request buffers,
//! records on their way to the writers), so 4 KiB pages cost nothing measurable and keep its
//! resident memory close to what it uses. The flag is per process and inherited by children.

/// Turns transparent huge pages off for this process (`PR_SET_THP_DISABLE`). Called first in
/// `main`, before threads start; a kernel without the flag (before 3.15) keeps its default,
/// which is only a larger resident set.
pub fn disable() {
    if let Err(e) = nix::sys::prctl::set_thp_disable(true) {
        tracing::debug!(error = %e, "transparent huge pages stay as the kernel sets them");
    }
}
