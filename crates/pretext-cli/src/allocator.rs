//! The allocator of pretext's programs: mimalloc, told to keep freed memory for a minute.
//!
//! Training allocates and frees tensors of tens of megabytes every step. glibc's allocator
//! returns such blocks to the kernel on free, so each step paid for fresh page faults and zeroed
//! pages; mimalloc keeps them for reuse (the rotation CNN step runs 1.8x faster). mimalloc
//! itself gives memory back once it has lain free for its purge delay, 1 s by default: about as
//! long as one ResNet step on two cores, so each step took back, page by page and zeroed by the
//! kernel, much of what the one before had freed. A minute outlasts any step, and still hands a
//! finished phase's memory back within a minute.

use std::ffi::c_long;

/// The global allocator to declare in each program (`#[global_allocator]`).
pub type Allocator = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay`: its place in `mi_option_e` (mimalloc 3's `mimalloc.h`),
/// which `libmimalloc-sys` gives no constant for.
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// How long freed memory stays with the process before mimalloc returns it to the system.
pub const PURGE_DELAY_MS: c_long = 60_000;

/// mimalloc's own environment variable for the delay; a value set there stands.
const PURGE_DELAY_VAR: &str = "MIMALLOC_PURGE_DELAY";

/// Sets the purge delay to [`PURGE_DELAY_MS`] unless `MIMALLOC_PURGE_DELAY` chooses one. Call
/// first thing in `main`, before any thread starts (mimalloc's option setter is not
/// thread-safe).
pub fn keep_freed_memory() {
    if std::env::var_os(PURGE_DELAY_VAR).is_none() {
        // SAFETY: a plain store into mimalloc's option table, made before other threads exist.
        unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, PURGE_DELAY_MS) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The option number means the purge delay: its default is mimalloc 3's 1,000 ms, and it
    /// reads back what was set. An upgrade that renumbers the options fails here. (Where the
    /// environment sets the delay, the default is not there to check.)
    #[test]
    fn the_purge_delay_option_is_the_one_set() {
        if std::env::var_os(PURGE_DELAY_VAR).is_some() {
            return;
        }
        // SAFETY: reads and a store into mimalloc's option table; no other test touches it.
        let before = unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) };
        assert_eq!(before, 1_000, "mimalloc's default purge delay");
        keep_freed_memory();
        assert_eq!(
            unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) },
            PURGE_DELAY_MS
        );
    }
}
