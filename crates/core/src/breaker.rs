//! A circuit breaker per downstream, so a failing endpoint is given time to
//! recover instead of being hammered by every queued message.
//!
//! # States
//!
//! - **Closed**: every call is admitted and its outcome recorded. The breaker
//!   opens after `consecutive_failures` failures in a row, or when more than
//!   `failure_rate` of the last `window` outcomes failed (only once `window`
//!   outcomes have been seen, so three early failures cannot trip it).
//! - **Open**: every call is refused with [`BreakerOpen`] for `open_for`.
//!   The first [`CircuitBreaker::try_acquire`] after that moves it to
//!   half-open; the move is lazy, so [`CircuitBreaker::state`] keeps
//!   reporting `Open` until somebody asks.
//! - **HalfOpen**: at most `half_open_probes` calls are in flight at once;
//!   everyone else is refused, because letting a burst through is exactly
//!   what the breaker is protecting against. `close_after_successes`
//!   successful probes (cumulative over the half-open period) close it with a
//!   fresh window; any failed probe opens it again for a full `open_for`.
//!
//! # Permits and generations
//!
//! A call is a [`Permit`]: report [`Permit::success`] or [`Permit::failure`]
//! when the call finishes. A permit dropped without a verdict (the task was
//! cancelled, the message was nacked for unrelated reasons) releases its
//! half-open probe slot and records nothing.
//!
//! Each state change starts a new generation and permits remember the one
//! they were issued in. A verdict from an older generation is ignored: a slow
//! call admitted while closed must not reopen a breaker that has since
//! recovered, nor be mistaken for a half-open probe.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use hookline_core::breaker::{BreakerConfig, BreakerState, CircuitBreaker, ManualClock};
//!
//! let clock = Arc::new(ManualClock::new());
//! let breaker = CircuitBreaker::new("shop-42", BreakerConfig::default(), clock.clone());
//! for _ in 0..5 {
//!     breaker.try_acquire().expect("closed admits everything").failure();
//! }
//! assert_eq!(breaker.state(), BreakerState::Open);
//! let refused = breaker.try_acquire().unwrap_err();
//! assert_eq!(refused.retry_in, Duration::from_secs(60));
//!
//! clock.advance(Duration::from_secs(60));
//! let probe = breaker.try_acquire().expect("first call after open_for is a probe");
//! assert_eq!(breaker.state(), BreakerState::HalfOpen);
//! probe.success();
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// A source of monotonic time, injectable so tests can move time by hand.
pub trait Clock: Send + Sync {
    /// The current instant; must never go backwards.
    fn now(&self) -> Instant;
}

/// The real monotonic clock, [`Instant::now`].
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that only moves when told to, for deterministic tests here and in
/// other crates (hence not `cfg(test)`).
///
/// Share it as `Arc<ManualClock>`: keep one handle to call
/// [`ManualClock::advance`] and pass a clone to [`CircuitBreaker::new`].
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<Instant>,
}

impl ManualClock {
    /// A clock frozen at the real current instant.
    pub fn new() -> Self {
        Self {
            now: Mutex::new(Instant::now()),
        }
    }

    /// Moves the clock forward by `by`. A step that `Instant` cannot
    /// represent (centuries) is ignored rather than panicking.
    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(later) = now.checked_add(by) {
            *now = later;
        }
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// When the breaker opens and how it recovers. Zero counts (`window`,
/// `consecutive_failures`, `half_open_probes`, `close_after_successes`) would
/// make it trip on nothing or never recover, so [`CircuitBreaker::new`]
/// treats them as 1.
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerConfig {
    /// Open after this many failures in a row while closed (default 5).
    /// Set it to `u32::MAX` to rely on the rate rule alone.
    pub consecutive_failures: u32,
    /// Open when the failed fraction of the last `window` outcomes is
    /// strictly greater than this (default 0.5, so 5 of 10 does not open
    /// and 6 of 10 does). `1.0` or more disables the rate rule.
    pub failure_rate: f64,
    /// How many of the most recent closed-state outcomes the rate rule looks
    /// at (default 10). The rule only applies once this many have been
    /// recorded since the breaker last closed, so a handful of early failures
    /// cannot trip it on their own.
    pub window: usize,
    /// How long an open breaker refuses calls before trying a probe
    /// (default 60 s).
    pub open_for: Duration,
    /// How many probe calls may be in flight at once while half-open
    /// (default 1).
    pub half_open_probes: u32,
    /// How many successful probes close the breaker again (default 3),
    /// counted over the whole half-open period, not necessarily at once.
    pub close_after_successes: u32,
}

impl BreakerConfig {
    /// The project defaults, as a `const` for other `const` configuration.
    pub const DEFAULT: Self = Self {
        consecutive_failures: 5,
        failure_rate: 0.5,
        window: 10,
        open_for: Duration::from_secs(60),
        half_open_probes: 1,
        close_after_successes: 3,
    };

    fn normalised(mut self) -> Self {
        self.consecutive_failures = self.consecutive_failures.max(1);
        self.window = self.window.max(1);
        self.half_open_probes = self.half_open_probes.max(1);
        self.close_after_successes = self.close_after_successes.max(1);
        self
    }
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Where a breaker is in its cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BreakerState {
    /// Healthy: calls flow and outcomes are watched.
    Closed,
    /// Tripped: calls are refused until `open_for` has passed.
    Open,
    /// Recovering: a limited number of probe calls decide the next state.
    HalfOpen,
}

impl BreakerState {
    /// A stable lower-case name for logs and metric labels:
    /// `"closed"`, `"open"` or `"half-open"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half-open",
        }
    }

    /// The value to export as a state gauge: `0` closed, `1` open,
    /// `2` half-open. Alert on `== 1`; anything non-zero means the
    /// downstream is not receiving its normal traffic.
    pub const fn gauge_value(self) -> u8 {
        match self {
            Self::Closed => 0,
            Self::Open => 1,
            Self::HalfOpen => 2,
        }
    }
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A call refused by the breaker. The message should be requeued after
/// `retry_in`, not counted as a failed delivery attempt: the downstream was
/// never called.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("circuit breaker {name} is {state}, retry in {retry_in:?}")]
pub struct BreakerOpen {
    /// The breaker's name, usually the downstream it guards.
    pub name: Arc<str>,
    /// [`BreakerState::Open`], or [`BreakerState::HalfOpen`] when every probe
    /// slot was taken.
    pub state: BreakerState,
    /// When open: the exact time left until a probe will be admitted. When
    /// half-open: `open_for`, because nobody can know when the probe will
    /// answer, and a failing probe would impose that much anyway. Either way
    /// a hint for scheduling, not a promise.
    pub retry_in: Duration,
}

/// Guards one downstream. Cheap to clone; clones share the same state.
///
/// `Send + Sync`: one breaker is meant to be shared by every task
/// delivering to the same endpoint.
#[derive(Clone)]
pub struct CircuitBreaker {
    shared: Arc<Shared>,
}

struct Shared {
    name: Arc<str>,
    config: BreakerConfig,
    clock: Arc<dyn Clock>,
    // A plain std mutex, not an async one: every critical section is a few
    // field updates with no I/O, no allocation beyond the tiny window and no
    // `.await`, so it is never held across a suspension point and contention
    // is nanoseconds. An async mutex would only add overhead and would make
    // `Permit`'s `Drop` (which must take the lock) impossible.
    core: Mutex<Core>,
}

/// Everything the mutex protects.
struct Core {
    /// Bumped on every state change; permits carry the value they were
    /// issued under so that late verdicts can be recognised and ignored.
    generation: u64,
    phase: Phase,
    /// Closed-state outcomes, oldest first, `true` for a failure. Kept out of
    /// `Phase` so its buffer is reused across cycles.
    outcomes: VecDeque<bool>,
    /// Failures currently in `outcomes`, to avoid rescanning it.
    window_failures: usize,
    /// Failures in a row at the end of `outcomes`.
    consecutive_failures: u32,
}

enum Phase {
    Closed,
    Open { since: Instant },
    HalfOpen { in_flight: u32, successes: u32 },
}

impl Core {
    fn state(&self) -> BreakerState {
        match self.phase {
            Phase::Closed => BreakerState::Closed,
            Phase::Open { .. } => BreakerState::Open,
            Phase::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Starts a new generation in `phase`, forgetting closed-state history:
    /// after a trip the old outcomes are what caused it, and after a recovery
    /// they describe a downstream that no longer exists.
    fn enter(&mut self, phase: Phase) {
        self.generation = self.generation.wrapping_add(1);
        self.phase = phase;
        self.outcomes.clear();
        self.window_failures = 0;
        self.consecutive_failures = 0;
    }

    /// Records a closed-state outcome; returns whether the breaker must trip.
    fn record(&mut self, failed: bool, config: &BreakerConfig) -> bool {
        if self.outcomes.len() >= config.window && self.outcomes.pop_front() == Some(true) {
            self.window_failures -= 1;
        }
        self.outcomes.push_back(failed);
        if failed {
            self.window_failures += 1;
            self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        } else {
            self.consecutive_failures = 0;
        }
        let full = self.outcomes.len() >= config.window;
        let rate = self.window_failures as f64 / self.outcomes.len() as f64;
        self.consecutive_failures >= config.consecutive_failures
            || (full && rate > config.failure_rate)
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Core> {
        // A panic while holding the lock can only interrupt plain field
        // updates, and the worst left behind is a miscounted window; refusing
        // all traffic forever would be far worse.
        self.core.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl CircuitBreaker {
    /// A breaker named `name` (shown in errors; use the downstream's
    /// identity) with the given configuration and clock. Zero counts in
    /// `config` are treated as 1, see [`BreakerConfig`].
    pub fn new(name: impl Into<String>, config: BreakerConfig, clock: Arc<dyn Clock>) -> Self {
        let name: String = name.into();
        Self {
            shared: Arc::new(Shared {
                name: name.into(),
                config: config.normalised(),
                clock,
                core: Mutex::new(Core {
                    generation: 0,
                    phase: Phase::Closed,
                    outcomes: VecDeque::new(),
                    window_failures: 0,
                    consecutive_failures: 0,
                }),
            }),
        }
    }

    /// A breaker with [`BreakerConfig::default`] on the [`SystemClock`].
    pub fn with_defaults(name: impl Into<String>) -> Self {
        Self::new(name, BreakerConfig::default(), Arc::new(SystemClock))
    }

    /// The name given at construction.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The configuration in force, after zero counts were raised to 1.
    pub fn config(&self) -> &BreakerConfig {
        &self.shared.config
    }

    /// The current state, for gauges and logs. An open breaker whose
    /// `open_for` has passed still reports `Open` until the next
    /// [`CircuitBreaker::try_acquire`] turns it half-open.
    pub fn state(&self) -> BreakerState {
        self.shared.lock().state()
    }

    /// How many times the state has changed since the breaker was made. A watcher that samples
    /// [`CircuitBreaker::state`] now and then can miss a short open period; a closed breaker
    /// whose count moved since it last looked has been open in between.
    pub fn changes(&self) -> u64 {
        self.shared.lock().generation
    }

    /// Asks to make one call to the downstream.
    ///
    /// Closed: always granted. Open: refused until `open_for` has passed
    /// since it opened; the first call after that is granted as a probe and
    /// moves the breaker to half-open. Half-open: granted while fewer than
    /// `half_open_probes` probes are in flight, refused otherwise.
    ///
    /// The [`Permit`] is owned, so it can move into a spawned task.
    pub fn try_acquire(&self) -> Result<Permit, BreakerOpen> {
        let config = &self.shared.config;
        // Read the clock before locking so foreign code never runs inside
        // the critical section.
        let now = self.shared.clock.now();
        let mut core = self.shared.lock();
        match &mut core.phase {
            Phase::Closed => {}
            Phase::Open { since } => {
                let elapsed = now.saturating_duration_since(*since);
                if elapsed < config.open_for {
                    return Err(self.refusal(BreakerState::Open, config.open_for - elapsed));
                }
                core.enter(Phase::HalfOpen {
                    in_flight: 1,
                    successes: 0,
                });
            }
            Phase::HalfOpen { in_flight, .. } => {
                if *in_flight >= config.half_open_probes {
                    return Err(self.refusal(BreakerState::HalfOpen, config.open_for));
                }
                *in_flight += 1;
            }
        }
        Ok(Permit {
            shared: Arc::clone(&self.shared),
            generation: core.generation,
            settled: false,
        })
    }

    fn refusal(&self, state: BreakerState, retry_in: Duration) -> BreakerOpen {
        BreakerOpen {
            name: Arc::clone(&self.shared.name),
            state,
            retry_in,
        }
    }
}

impl fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("name", &self.shared.name)
            .field("state", &self.state())
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

/// Permission to make one call, from [`CircuitBreaker::try_acquire`].
///
/// Report the outcome with [`Permit::success`] or [`Permit::failure`].
/// Dropping it without a verdict records nothing and frees its half-open
/// probe slot, so cancelled work never wedges a recovering breaker. What
/// counts as a failure is the caller's call: timeouts, connection errors and
/// 5xx should; a 4xx caused by the payload should not, since it says nothing
/// about the downstream's health.
#[must_use = "a permit should be completed with success() or failure()"]
pub struct Permit {
    shared: Arc<Shared>,
    generation: u64,
    settled: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Success,
    Failure,
    Abandoned,
}

impl Permit {
    /// The call succeeded.
    pub fn success(mut self) {
        self.settle(Verdict::Success);
    }

    /// The call failed in a way that reflects on the downstream's health.
    pub fn failure(mut self) {
        self.settle(Verdict::Failure);
    }

    fn settle(&mut self, verdict: Verdict) {
        self.settled = true;
        let config = &self.shared.config;
        let now = self.shared.clock.now();
        let mut core = self.shared.lock();
        if core.generation != self.generation {
            // Issued before the last state change: its verdict describes a
            // past the breaker has already acted on, and it holds no slot in
            // the current half-open period.
            return;
        }
        match &mut core.phase {
            Phase::Closed => {
                let failed = match verdict {
                    Verdict::Success => false,
                    Verdict::Failure => true,
                    Verdict::Abandoned => return,
                };
                if core.record(failed, config) {
                    core.enter(Phase::Open { since: now });
                }
            }
            Phase::HalfOpen {
                in_flight,
                successes,
            } => {
                *in_flight = in_flight.saturating_sub(1);
                match verdict {
                    Verdict::Abandoned => {}
                    Verdict::Success => {
                        *successes += 1;
                        if *successes >= config.close_after_successes {
                            core.enter(Phase::Closed);
                        }
                    }
                    Verdict::Failure => core.enter(Phase::Open { since: now }),
                }
            }
            // No permit is ever issued while open, so a current-generation
            // permit cannot get here; ignoring it is the safe reading anyway.
            Phase::Open { .. } => {}
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.settled {
            self.settle(Verdict::Abandoned);
        }
    }
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("breaker", &self.shared.name)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::sync::Barrier;
    use std::thread;

    const SECS: fn(u64) -> Duration = Duration::from_secs;

    fn breaker_with(config: BreakerConfig) -> (CircuitBreaker, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new());
        (CircuitBreaker::new("test", config, clock.clone()), clock)
    }

    fn breaker() -> (CircuitBreaker, Arc<ManualClock>) {
        breaker_with(BreakerConfig::default())
    }

    /// Runs calls with the given outcomes, 'F' failure and 'S' success.
    fn run(b: &CircuitBreaker, pattern: &str) {
        for c in pattern.chars() {
            let permit = b.try_acquire().expect("breaker should admit");
            match c {
                'F' => permit.failure(),
                'S' => permit.success(),
                _ => unreachable!(),
            }
        }
    }

    #[test]
    fn a_watcher_can_tell_a_closed_breaker_was_open_in_between() {
        let (b, clock) = open_breaker();
        let opened = b.changes();
        assert!(opened >= 1);
        clock.advance(Duration::from_secs(61));
        run(&b, "SSS");
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.changes(), opened + 2, "half-open, then closed");
        run(&b, "SS");
        assert_eq!(
            b.changes(),
            opened + 2,
            "successes while closed change nothing"
        );
    }

    fn open_breaker() -> (CircuitBreaker, Arc<ManualClock>) {
        let (b, clock) = breaker();
        run(&b, "FFFFF");
        assert_eq!(b.state(), BreakerState::Open);
        (b, clock)
    }

    fn half_open_breaker(config: BreakerConfig) -> (CircuitBreaker, Arc<ManualClock>) {
        let open_for = config.open_for;
        let (b, clock) = breaker_with(BreakerConfig {
            consecutive_failures: 1,
            ..config
        });
        run(&b, "F");
        clock.advance(open_for);
        (b, clock)
    }

    #[test]
    fn is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<CircuitBreaker>();
        assert_send_sync::<Permit>();
        assert_send_sync::<BreakerOpen>();
        assert_send_sync::<ManualClock>();
    }

    #[test]
    fn defaults_match_the_issue() {
        let c = BreakerConfig::default();
        assert_eq!(c.consecutive_failures, 5);
        assert_eq!(c.failure_rate, 0.5);
        assert_eq!(c.window, 10);
        assert_eq!(c.open_for, SECS(60));
        assert_eq!(c.half_open_probes, 1);
        assert_eq!(c.close_after_successes, 3);
        let b = CircuitBreaker::with_defaults("orders-api");
        assert_eq!(b.name(), "orders-api");
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.config(), &c);
    }

    #[test]
    fn five_consecutive_failures_open() {
        let (b, _) = breaker();
        run(&b, "FFFF");
        assert_eq!(b.state(), BreakerState::Closed);
        run(&b, "F");
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[test]
    fn a_success_resets_the_consecutive_count() {
        let (b, _) = breaker();
        run(&b, "FFFFSFFFF");
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn six_of_ten_open_without_five_in_a_row() {
        let (b, _) = breaker();
        run(&b, "FFSFFSFFS");
        assert_eq!(b.state(), BreakerState::Closed, "window not full yet");
        run(&b, "S");
        assert_eq!(b.state(), BreakerState::Open, "6 of 10 > 0.5");
    }

    #[test]
    fn five_of_ten_do_not_open_and_the_window_slides() {
        let (b, _) = breaker();
        run(&b, "FSFSFSFSFS");
        assert_eq!(b.state(), BreakerState::Closed, "5 of 10 is not > 0.5");
        run(&b, "F"); // window SFSFSFSFSF: still 5 of 10
        assert_eq!(b.state(), BreakerState::Closed);
        run(&b, "F"); // window FSFSFSFSFF: 6 of 10
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[test]
    fn nine_calls_with_five_failures_do_not_open() {
        let (b, _) = breaker();
        run(&b, "FSFSFSFSF");
        assert_eq!(
            b.state(),
            BreakerState::Closed,
            "5 of 9 but window not full"
        );
        run(&b, "S");
        assert_eq!(b.state(), BreakerState::Closed, "now 5 of 10");
    }

    #[test]
    fn dropped_closed_permits_record_nothing() {
        let (b, _) = breaker();
        run(&b, "FFFF");
        for _ in 0..20 {
            drop(b.try_acquire().unwrap());
        }
        assert_eq!(b.state(), BreakerState::Closed);
        run(&b, "F");
        assert_eq!(b.state(), BreakerState::Open, "drops did not break the run");
    }

    #[test]
    fn closed_admits_unlimited_concurrent_calls() {
        let (b, _) = breaker();
        let permits: Vec<_> = (0..100).map(|_| b.try_acquire().unwrap()).collect();
        assert_eq!(permits.len(), 100);
    }

    #[test]
    fn open_refuses_until_open_for_has_elapsed() {
        let (b, clock) = open_breaker();
        let err = b.try_acquire().unwrap_err();
        assert_eq!(err.state, BreakerState::Open);
        assert_eq!(err.retry_in, SECS(60));
        assert_eq!(
            err.to_string(),
            "circuit breaker test is open, retry in 60s"
        );

        clock.advance(Duration::from_millis(59_999));
        let err = b.try_acquire().unwrap_err();
        assert_eq!(err.retry_in, Duration::from_millis(1));
        assert_eq!(b.state(), BreakerState::Open);

        clock.advance(Duration::from_millis(1));
        assert_eq!(
            b.state(),
            BreakerState::Open,
            "the move to half-open is lazy"
        );
        let _probe = b.try_acquire().unwrap();
        assert_eq!(b.state(), BreakerState::HalfOpen);
    }

    #[test]
    fn half_open_admits_exactly_one_probe() {
        let (b, clock) = open_breaker();
        clock.advance(SECS(60));
        let probe = b.try_acquire().unwrap();
        let err = b.try_acquire().unwrap_err();
        assert_eq!(err.state, BreakerState::HalfOpen);
        assert_eq!(err.retry_in, SECS(60));
        assert_eq!(
            err.to_string(),
            "circuit breaker test is half-open, retry in 60s"
        );

        drop(probe);
        assert_eq!(
            b.state(),
            BreakerState::HalfOpen,
            "abandoning changes nothing"
        );
        let _second = b.try_acquire().expect("the slot was freed");
        assert!(b.try_acquire().is_err());
    }

    #[test]
    fn three_successful_probes_close_with_a_fresh_window() {
        let (b, clock) = open_breaker();
        clock.advance(SECS(60));
        run(&b, "SS");
        assert_eq!(b.state(), BreakerState::HalfOpen);
        run(&b, "S");
        assert_eq!(b.state(), BreakerState::Closed);
        run(&b, "FFFF");
        assert_eq!(b.state(), BreakerState::Closed, "counters were reset");
        run(&b, "F");
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[test]
    fn successes_accumulate_across_abandoned_probes() {
        let (b, clock) = open_breaker();
        clock.advance(SECS(60));
        run(&b, "S");
        drop(b.try_acquire().unwrap());
        run(&b, "S");
        drop(b.try_acquire().unwrap());
        assert_eq!(b.state(), BreakerState::HalfOpen);
        run(&b, "S");
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn a_failed_probe_reopens_for_a_full_period() {
        let (b, clock) = open_breaker();
        clock.advance(SECS(60));
        run(&b, "SS");
        clock.advance(SECS(5));
        run(&b, "F");
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.try_acquire().unwrap_err().retry_in, SECS(60));
        clock.advance(SECS(60));
        run(&b, "SS");
        assert_eq!(
            b.state(),
            BreakerState::HalfOpen,
            "successes restart from zero"
        );
        run(&b, "S");
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn stale_permits_are_ignored() {
        let (b, clock) = breaker();
        let slow_closed: Vec<_> = (0..4).map(|_| b.try_acquire().unwrap()).collect();
        run(&b, "FFFFF");
        assert_eq!(b.state(), BreakerState::Open);

        // A late failure while open does not extend the open period.
        clock.advance(SECS(30));
        let mut slow_closed = slow_closed.into_iter();
        slow_closed.next().unwrap().failure();
        assert_eq!(b.try_acquire().unwrap_err().retry_in, SECS(30));

        // While half-open, stale verdicts neither count as probe results nor
        // free the probe slot.
        clock.advance(SECS(30));
        let probe = b.try_acquire().unwrap();
        slow_closed.next().unwrap().success();
        drop(slow_closed.next().unwrap());
        assert!(
            b.try_acquire().is_err(),
            "slot still held by the real probe"
        );
        assert_eq!(b.state(), BreakerState::HalfOpen);
        probe.success();
        run(&b, "S");
        assert_eq!(b.state(), BreakerState::HalfOpen, "only two real successes");
        run(&b, "S");
        assert_eq!(b.state(), BreakerState::Closed);

        // A call from the previous closed period must not count in this one.
        slow_closed.next().unwrap().failure();
        run(&b, "FFFF");
        assert_eq!(
            b.state(),
            BreakerState::Closed,
            "the stale failure was not counted"
        );
    }

    #[test]
    fn a_probe_outliving_half_open_is_stale() {
        let (b, clock) = breaker_with(BreakerConfig {
            half_open_probes: 2,
            close_after_successes: 1,
            ..BreakerConfig::default()
        });
        run(&b, "FFFFF");
        clock.advance(SECS(60));
        let first = b.try_acquire().unwrap();
        let second = b.try_acquire().unwrap();
        first.success();
        assert_eq!(b.state(), BreakerState::Closed);
        second.failure();
        assert_eq!(b.state(), BreakerState::Closed);
        run(&b, "FFFF");
        assert_eq!(
            b.state(),
            BreakerState::Closed,
            "the late probe failure was not counted"
        );
    }

    #[test]
    fn zero_counts_are_treated_as_one() {
        let (b, clock) = breaker_with(BreakerConfig {
            consecutive_failures: 0,
            window: 0,
            half_open_probes: 0,
            close_after_successes: 0,
            failure_rate: 2.0,
            ..BreakerConfig::default()
        });
        assert_eq!(b.config().window, 1);
        run(&b, "S");
        assert_eq!(b.state(), BreakerState::Closed);
        run(&b, "F");
        assert_eq!(b.state(), BreakerState::Open);
        clock.advance(SECS(60));
        let probe = b.try_acquire().unwrap();
        assert!(b.try_acquire().is_err());
        probe.success();
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn state_names_and_gauge_values() {
        let all = [
            BreakerState::Closed,
            BreakerState::Open,
            BreakerState::HalfOpen,
        ];
        assert_eq!(
            all.map(BreakerState::as_str),
            ["closed", "open", "half-open"]
        );
        assert_eq!(all.map(BreakerState::gauge_value), [0, 1, 2]);
        assert_eq!(BreakerState::HalfOpen.to_string(), "half-open");
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = ManualClock::new();
        let start = clock.now();
        assert_eq!(clock.now(), start);
        clock.advance(SECS(90));
        assert_eq!(clock.now() - start, SECS(90));
        clock.advance(Duration::MAX);
        assert_eq!(
            clock.now() - start,
            SECS(90),
            "unrepresentable step ignored"
        );
        let system = SystemClock;
        assert!(system.now() <= system.now());
    }

    #[test]
    fn debug_output_names_the_breaker() {
        let (b, _) = breaker();
        let text = format!("{b:?}");
        assert!(
            text.contains("\"test\"") && text.contains("Closed"),
            "{text}"
        );
        let permit = b.try_acquire().unwrap();
        assert!(format!("{permit:?}").contains("generation"));
    }

    fn race_for_probes(probes: u32) -> usize {
        const THREADS: usize = 8;
        let (b, _) = half_open_breaker(BreakerConfig {
            half_open_probes: probes,
            ..BreakerConfig::default()
        });
        let barrier = Arc::new(Barrier::new(THREADS));
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                let b = b.clone();
                let barrier = Arc::clone(&barrier);
                thread::spawn(move || {
                    barrier.wait();
                    // Hand the permit back instead of dropping it, which
                    // would free the slot for a slower thread.
                    b.try_acquire().ok()
                })
            })
            .collect();
        let permits: Vec<_> = handles
            .into_iter()
            .filter_map(|h| h.join().unwrap())
            .collect();
        assert_eq!(b.state(), BreakerState::HalfOpen);
        permits.len()
    }

    #[test]
    fn concurrent_acquires_on_half_open_admit_exactly_the_probe_count() {
        for _ in 0..50 {
            assert_eq!(race_for_probes(1), 1);
            assert_eq!(race_for_probes(3), 3);
        }
    }

    // ---- state-machine property test against a reference model ----

    #[derive(Debug, Clone)]
    enum Op {
        Acquire,
        Succeed(usize),
        Fail(usize),
        Abandon(usize),
        Advance(Duration),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => Just(Op::Acquire),
            3 => any::<usize>().prop_map(Op::Succeed),
            3 => any::<usize>().prop_map(Op::Fail),
            1 => any::<usize>().prop_map(Op::Abandon),
            1 => (0u64..25_000).prop_map(|ms| Op::Advance(Duration::from_millis(ms))),
            // Whole seconds land exactly on `open_for` boundaries.
            1 => (0u64..25).prop_map(|s| Op::Advance(SECS(s))),
        ]
    }

    fn config() -> impl Strategy<Value = BreakerConfig> {
        (
            1u32..6,
            prop::sample::select(vec![0.0, 0.25, 0.3, 0.5, 0.75, 1.0]),
            1usize..8,
            1u64..20,
            1u32..4,
            1u32..4,
        )
            .prop_map(
                |(consecutive, rate, window, open_s, probes, close)| BreakerConfig {
                    consecutive_failures: consecutive,
                    failure_rate: rate,
                    window,
                    open_for: SECS(open_s),
                    half_open_probes: probes,
                    close_after_successes: close,
                },
            )
    }

    /// The breaker's rules written as plainly as possible: the whole closed
    /// history is kept and the window is recomputed from it every time.
    #[derive(Debug)]
    enum ModelPhase {
        Closed { history: Vec<bool> },
        Open { since: Duration },
        HalfOpen { in_flight: u32, successes: u32 },
    }

    #[derive(Debug)]
    struct Model {
        config: BreakerConfig,
        now: Duration,
        generation: u64,
        phase: ModelPhase,
    }

    impl Model {
        fn state(&self) -> BreakerState {
            match self.phase {
                ModelPhase::Closed { .. } => BreakerState::Closed,
                ModelPhase::Open { .. } => BreakerState::Open,
                ModelPhase::HalfOpen { .. } => BreakerState::HalfOpen,
            }
        }

        fn go(&mut self, phase: ModelPhase) {
            self.generation += 1;
            self.phase = phase;
        }

        fn acquire(&mut self) -> Result<u64, (BreakerState, Duration)> {
            let c = &self.config;
            match &mut self.phase {
                ModelPhase::Closed { .. } => {}
                ModelPhase::Open { since } => {
                    let waited = self.now - *since;
                    if waited < c.open_for {
                        return Err((BreakerState::Open, c.open_for - waited));
                    }
                    self.go(ModelPhase::HalfOpen {
                        in_flight: 1,
                        successes: 0,
                    });
                }
                ModelPhase::HalfOpen { in_flight, .. } => {
                    if *in_flight == c.half_open_probes {
                        return Err((BreakerState::HalfOpen, c.open_for));
                    }
                    *in_flight += 1;
                }
            }
            Ok(self.generation)
        }

        fn complete(&mut self, generation: u64, outcome: Option<bool>) {
            if generation != self.generation {
                return;
            }
            let c = self.config.clone();
            match &mut self.phase {
                ModelPhase::Closed { history } => {
                    let Some(failed) = outcome else { return };
                    history.push(failed);
                    let run = history.iter().rev().take_while(|f| **f).count();
                    let recent = &history[history.len().saturating_sub(c.window)..];
                    let failures = recent.iter().filter(|f| **f).count();
                    let by_rate = recent.len() == c.window
                        && failures as f64 / c.window as f64 > c.failure_rate;
                    if run >= c.consecutive_failures as usize || by_rate {
                        let since = self.now;
                        self.go(ModelPhase::Open { since });
                    }
                }
                ModelPhase::HalfOpen {
                    in_flight,
                    successes,
                } => {
                    *in_flight -= 1;
                    match outcome {
                        None => {}
                        Some(false) => {
                            *successes += 1;
                            if *successes == c.close_after_successes {
                                self.go(ModelPhase::Closed { history: vec![] });
                            }
                        }
                        Some(true) => {
                            let since = self.now;
                            self.go(ModelPhase::Open { since });
                        }
                    }
                }
                ModelPhase::Open { .. } => panic!("model issued a permit while open"),
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn behaves_like_the_reference_model(
            config in config(),
            ops in prop::collection::vec(op(), 1..120),
        ) {
            let (b, clock) = breaker_with(config.clone());
            let mut model = Model {
                config: config.clone(),
                now: Duration::ZERO,
                generation: 0,
                phase: ModelPhase::Closed { history: vec![] },
            };
            let mut permits: Vec<(Permit, u64)> = Vec::new();
            let mut opened_at = Duration::ZERO;
            let mut before = BreakerState::Closed;

            for op in ops {
                let mut acquired = None;
                match op {
                    Op::Acquire => {
                        let real = b.try_acquire();
                        let expected = model.acquire();
                        if before == BreakerState::Open {
                            let waited = model.now - opened_at;
                            prop_assert_eq!(real.is_ok(), waited >= config.open_for);
                        }
                        match (real, expected) {
                            (Ok(permit), Ok(generation)) => {
                                acquired = Some(());
                                permits.push((permit, generation));
                            }
                            (Err(err), Err((state, retry_in))) => {
                                prop_assert_eq!(err.state, state);
                                prop_assert_eq!(err.retry_in, retry_in);
                            }
                            (real, expected) => prop_assert!(
                                false,
                                "breaker gave {:?}, model {:?}",
                                real.map(|_| ()),
                                expected
                            ),
                        }
                    }
                    Op::Succeed(i) | Op::Fail(i) | Op::Abandon(i) if !permits.is_empty() => {
                        let (permit, generation) = permits.swap_remove(i % permits.len());
                        let outcome = match op {
                            Op::Succeed(_) => { permit.success(); Some(false) }
                            Op::Fail(_) => { permit.failure(); Some(true) }
                            _ => { drop(permit); None }
                        };
                        model.complete(generation, outcome);
                    }
                    Op::Succeed(_) | Op::Fail(_) | Op::Abandon(_) => {}
                    Op::Advance(by) => {
                        clock.advance(by);
                        model.now += by;
                    }
                }

                let after = b.state();
                prop_assert_eq!(after, model.state());
                prop_assert!(
                    !(before == BreakerState::Closed && after == BreakerState::HalfOpen),
                    "closed must never turn half-open directly"
                );
                if before == BreakerState::Open && after == BreakerState::HalfOpen {
                    prop_assert!(acquired.is_some(), "only an admitted call leaves open");
                }
                if after == BreakerState::Open && before != BreakerState::Open {
                    opened_at = model.now;
                }
                if after == BreakerState::HalfOpen {
                    let probes = permits.iter().filter(|(_, g)| *g == model.generation).count();
                    prop_assert!(probes <= config.half_open_probes as usize);
                }
                before = after;
            }
        }
    }
}
