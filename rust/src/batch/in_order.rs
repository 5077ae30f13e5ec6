//! Tasks run in parallel, their legs appended to the batch's columns in task
//! order as each is done.
//!
//! Each worker claims the next task in order, writes its legs into columns
//! of its own (reused task after task, so they stay in cache) and appends
//! them to the batch if every earlier task's are in; else they wait for the
//! worker of the task before, which appends them after its own. Each leg is
//! copied once, from cache, where writing every task's legs out and
//! gathering them at the end moved them through memory three times (45 MB
//! for a million portfolios, about 8 ms of a tick at this machine's
//! memory bandwidth, with both cores copying).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use super::LegColumns;

/// Orders and skipped legs.
pub(crate) type Legs = (LegColumns, LegColumns);

/// `work(worker, index, task, legs)` over `tasks`, each writing its legs into
/// `legs`; returns every task's legs end to end, in task order, in columns
/// made with room for `room` (orders, skips). `init` makes a worker's
/// reusable memory. On the calling thread when `inline` (its legs written
/// straight into the batch), else on every thread of the pool.
///
/// The room is made by the calling thread before any task runs: columns
/// that grew as tasks came in were copied as they grew, and the allocator
/// took the memory of columns first made on a worker thread back from the
/// system after each tick (a million portfolios: 10,000 page faults and
/// 40 ms of system time a tick).
pub(crate) fn run_in_order<T, W, I, F>(tasks: Vec<T>, inline: bool, room: (usize, usize), init: I, work: F) -> Legs
where
    T: Send,
    I: Fn() -> W + Sync,
    F: Fn(&mut W, usize, T, &mut Legs) + Sync,
{
    let mut out = Legs::default();
    out.0.reserve(room.0);
    out.1.reserve(room.1);
    if inline {
        let mut worker = init();
        tasks.into_iter().enumerate().for_each(|(c, task)| work(&mut worker, c, task, &mut out));
        return out;
    }
    let count = tasks.len();
    let tasks: Vec<Mutex<Option<T>>> = tasks.into_iter().map(|task| Mutex::new(Some(task))).collect();
    let claimed = AtomicUsize::new(0);
    let front = Mutex::new(Front { next: 0, waiting: (0..count).map(|_| None).collect(), spare: Vec::new(), out });
    rayon::scope(|s| {
        for _ in 0..rayon::current_num_threads() {
            s.spawn(|_| {
                let (mut worker, mut legs) = (init(), Legs::default());
                loop {
                    let c = claimed.fetch_add(1, Ordering::Relaxed);
                    let Some(task) = tasks.get(c).and_then(|task| locked(task).take()) else { break };
                    work(&mut worker, c, task, &mut legs);
                    legs = locked(&front).hand_in(c, legs);
                }
            });
        }
    });
    front.into_inner().unwrap_or_else(|poisoned| poisoned.into_inner()).out
}

/// A lock that a panic elsewhere does not poison for good: what it guards is
/// whole between calls (a panic in a task still reaches the caller).
fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The batch's columns and the tasks' legs waiting their turn.
struct Front {
    /// The task whose legs go in next.
    next: usize,
    /// Legs of tasks done before their turn, by task.
    waiting: Vec<Option<Legs>>,
    /// Emptied columns to hand back to workers.
    spare: Vec<Legs>,
    out: Legs,
}

impl Front {
    /// Takes task `c`'s legs: appended with every waiting task after it if
    /// its turn has come, else kept. Returns empty columns for the worker's next task.
    fn hand_in(&mut self, c: usize, mut legs: Legs) -> Legs {
        if c != self.next {
            self.waiting[c] = Some(legs);
            return self.spare.pop().unwrap_or_default();
        }
        self.append(&mut legs);
        while let Some(mut waiting) = self.waiting.get_mut(self.next).and_then(Option::take) {
            self.append(&mut waiting);
            self.spare.push(waiting);
        }
        legs
    }

    /// Appends the next task's legs and empties them.
    fn append(&mut self, (orders, skips): &mut Legs) {
        self.out.0.append(orders);
        self.out.1.append(skips);
        orders.clear();
        skips.clear();
        self.next += 1;
    }
}
