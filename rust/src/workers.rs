//! The calling thread as one of the workers.
//!
//! A call from a thread outside the pool hands its work to the pool's
//! threads and sleeps until they finish; the pool's threads sleep between
//! calls. A backtest calls a few milliseconds of Rust after every few
//! milliseconds of Python, and on a 2-vCPU VM a sleeping thread takes up to
//! a millisecond to wake (measured: a 100,000-portfolio scan 3.3 ms back to
//! back, 4.1 ms after 5 ms of Python): every call began with nobody working.
//! A thread that has joined a pool starts on its work at once, and the
//! others take their share as they wake.

use std::sync::atomic::{AtomicBool, Ordering};

use rayon::{ThreadPoolBuildError, ThreadPoolBuilder};

/// Whether some thread has joined a pool: one per process, never dropped
/// (a pool that holds the calling thread cannot be dropped while it runs).
static JOINED: AtomicBool = AtomicBool::new(false);

/// Makes the calling thread a worker of a new pool as wide as the default
/// one (the calling thread and one thread fewer), so every parallel call it
/// makes from now on starts at once. Returns whether it joined: not if it
/// already is a worker, another thread has joined one, or there is one core
/// (a pool of the calling thread alone would leave work spawned from other
/// threads to nobody). Other threads keep using the default pool.
pub fn join_pool() -> Result<bool, ThreadPoolBuildError> {
    if rayon::current_thread_index().is_some() {
        return Ok(false);
    }
    let threads = rayon::current_num_threads();
    if threads < 2 || JOINED.swap(true, Ordering::AcqRel) {
        return Ok(false);
    }
    let pool = ThreadPoolBuilder::new()
        .num_threads(threads)
        .use_current_thread()
        .thread_name(|i| format!("rebal-{i}"))
        .build()?;
    std::mem::forget(pool);
    Ok(true)
}

/// Whether work of `size` runs on the calling thread alone: below
/// `threshold` for a thread outside any pool, where waking the pool costs
/// more than the work; below a sixteenth of it for a pool's thread (one
/// that joined, above all), which starts at once and is helped as the
/// others wake.
pub fn inline(size: usize, threshold: usize) -> bool {
    let joined = rayon::current_thread_index().is_some();
    size < if joined {
        threshold / JOINED_SHARE
    } else {
        threshold
    }
}

const JOINED_SHARE: usize = 16;

/// Portfolios per parallel task of a pass over a few per-portfolio columns
/// (the Engine's policy passes): such a pass is bound by memory, which two
/// cores read faster than one (a million portfolios: 0.6–1.7 ms a pass on
/// one thread).
pub(crate) const PASS_BLOCK: usize = 1 << 16;

#[cfg(test)]
mod tests {
    use rayon::prelude::*;

    use super::{inline, join_pool};

    #[test]
    fn a_thread_that_joins_works_in_its_own_pool() {
        std::thread::spawn(|| {
            let wide = rayon::current_num_threads() >= 2;
            assert!(
                inline(100, 1000),
                "small work stays on a thread outside the pool"
            );
            assert_eq!(
                join_pool().expect("a pool"),
                wide,
                "joins wherever there are two cores"
            );
            if !wide {
                return;
            }
            assert_eq!(
                rayon::current_thread_index(),
                Some(0),
                "the calling thread is the pool's first worker"
            );
            assert!(!inline(100, 1000), "and hands even small work out");
            let sum: u64 = (0..100_000u64).into_par_iter().map(|x| x * x).sum();
            assert_eq!(sum, (0..100_000u64).map(|x| x * x).sum::<u64>());
            assert!(
                !join_pool().expect("no new pool"),
                "a worker does not join again"
            );
        })
        .join()
        .expect("the test thread");
        assert!(
            !join_pool().expect("no new pool"),
            "one thread per process joins"
        );
    }
}
