//! The C allocator, set for a small resident set on a Pi.
//!
//! glibc's malloc gives threads that allocate at the same time arenas of their own (up to eight
//! per core), and memory freed into one arena serves only that arena. The gateway's threads
//! (two runtime workers, the broker's router and listeners, the buffer writer, the ack
//! publisher) each end up with one, holding freed memory the others cannot reuse: a
//! 1,000-device site's resident memory was ~2 MiB larger with them than with one arena
//! (`docs/benchmarks.md`, "Footprint"). The allocations on the hot path are small and made by
//! few threads at once, so one arena costs no measurable throughput (same section).
//!
//! The setting is glibc's own: `MALLOC_ARENA_MAX` in the environment (for example
//! `Environment=MALLOC_ARENA_MAX=4` in a systemd drop-in) wins over [`ARENAS`].

/// Arenas when `MALLOC_ARENA_MAX` is not set.
pub const ARENAS: i32 = 1;

/// Applies [`ARENAS`] unless `MALLOC_ARENA_MAX` is set. Call first in `main`, before any thread
/// starts. Nothing to do on other C libraries (musl has no arenas).
pub fn configure() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return;
    }
    set_arena_max(ARENAS);
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn set_arena_max(arenas: i32) {
    // SAFETY: mallopt only changes glibc's allocator parameters and is safe to call at any
    // time; a rejected value leaves the default in place (the return value says so, and the
    // default is a working allocator, so it is not an error worth stopping for).
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, arenas);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_arena_max(_arenas: i32) {}
