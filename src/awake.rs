//! Time this process was actually running, for budgets that must not be spent while it was stopped.
//!
//! A health gate that gives a new backend 30 s must not fail it because the launcher itself was frozen
//! for part of that time: a `SIGSTOP` (a debugger, `kill -STOP`, a job-control stop), a laptop that
//! slept (`Instant` counts suspend on some platforms), or a machine so loaded that the launcher did not
//! run. The backend kept starting meanwhile; only the launcher lost track of time.
//!
//! [`AwakeTimer`] measures time in small ticks of a `awake-clock` thread: each tick adds the time that
//! passed since the previous one, but never more than [`MAX_STEP`]. A gap far longer than a tick means the
//! process (or the machine) was not running, and it counts as one step only. The thread runs only while
//! some timer is alive.

use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// How often the clock thread looks at the time.
pub const TICK: Duration = Duration::from_millis(100);
/// The most one look may add: a longer gap is time the process did not run.
pub const MAX_STEP: Duration = Duration::from_millis(500);

struct State {
    /// Timers alive; the thread ends when none is.
    users: usize,
    /// Whether the clock thread runs (if it cannot be started, time is plain wall time).
    ticking: bool,
    /// Awake time up to `last`.
    awake: Duration,
    last: Instant,
}

struct Clock {
    state: Mutex<State>,
    wake: Condvar,
}

fn clock() -> &'static Clock {
    static CLOCK: OnceLock<Clock> = OnceLock::new();
    CLOCK.get_or_init(|| Clock {
        state: Mutex::new(State {
            users: 0,
            ticking: false,
            awake: Duration::ZERO,
            last: Instant::now(),
        }),
        wake: Condvar::new(),
    })
}

impl Clock {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Awake time now: what the ticks counted, plus the time since the last tick (capped while ticking).
fn now(state: &State) -> Duration {
    let since = state.last.elapsed();
    state.awake + if state.ticking { since.min(MAX_STEP) } else { since }
}

/// Adds one step, capped at [`MAX_STEP`].
fn advance(state: &mut State, to: Instant) {
    let step = to.saturating_duration_since(state.last);
    state.awake += step.min(MAX_STEP);
    state.last = to;
}

fn tick_loop() {
    let clock = clock();
    let mut state = clock.lock();
    loop {
        advance(&mut state, Instant::now());
        if state.users == 0 {
            state.ticking = false;
            return;
        }
        state = clock
            .wake
            .wait_timeout(state, TICK)
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .0;
    }
}

/// Measures the time this process was running since it was started (see the module's docs).
#[derive(Debug)]
pub struct AwakeTimer {
    start: Duration,
}

impl AwakeTimer {
    /// Starts measuring (and the clock thread, if no other timer runs it).
    pub fn start() -> AwakeTimer {
        let clock = clock();
        let mut state = clock.lock();
        if state.users == 0 && !state.ticking {
            // Nobody measured since the thread ended: that time is nobody's.
            state.last = Instant::now();
        }
        state.users += 1;
        if !state.ticking {
            state.ticking = std::thread::Builder::new()
                .name("awake-clock".into())
                .spawn(tick_loop)
                .map_err(|e| tracing::warn!("no awake-clock thread ({e}); timing with the wall clock"))
                .is_ok();
        }
        AwakeTimer { start: now(&state) }
    }

    /// The time the process ran since [`AwakeTimer::start`].
    pub fn elapsed(&self) -> Duration {
        now(&clock().lock()).saturating_sub(self.start)
    }
}

impl Drop for AwakeTimer {
    fn drop(&mut self) {
        let clock = clock();
        let mut state = clock.lock();
        state.users = state.users.saturating_sub(1);
        if state.users == 0 {
            clock.wake.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gap_longer_than_a_step_counts_as_one_step() {
        let t0 = Instant::now();
        let mut state = State {
            users: 1,
            ticking: true,
            awake: Duration::ZERO,
            last: t0,
        };
        advance(&mut state, t0 + Duration::from_millis(100));
        advance(&mut state, t0 + Duration::from_millis(200));
        assert_eq!(state.awake, Duration::from_millis(200));
        // Stopped for 10 s: one step.
        advance(&mut state, t0 + Duration::from_millis(10_200));
        assert_eq!(state.awake, Duration::from_millis(200) + MAX_STEP);
    }

    #[test]
    fn a_running_process_counts_its_time() {
        let timer = AwakeTimer::start();
        std::thread::sleep(Duration::from_millis(300));
        let elapsed = timer.elapsed();
        assert!(
            elapsed >= Duration::from_millis(250) && elapsed < Duration::from_secs(5),
            "{elapsed:?}"
        );
    }
}
