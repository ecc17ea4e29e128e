//! Capped exponential backoff with jitter, and `Retry-After` handling.
//!
//! # What "attempt" means
//!
//! Every method that takes an `attempt` (or `attempts_made`) expects **the
//! number of delivery attempts already made, all of which failed**. It is
//! 1-based in the natural way: after the first failed delivery you pass `1`
//! and get the delay before the first retry (`initial`). With the default
//! `max_attempts = 5` the deliveries are numbered 1..=5, so the retries come
//! after attempts 1, 2, 3 and 4 (1 s, 2 s, 4 s, 8 s before jitter) and after
//! attempt 5 has failed there is nothing left: [`RetryPolicy::next_delay`]
//! returns `None` and the message should be dead-lettered.
//!
//! `attempt = 0` (nothing has failed yet) is accepted and yields a zero delay:
//! there is nothing to back off from. A caller counting from zero is off by
//! one everywhere, so count the failures, not the retries.
//!
//! # Why jitter is applied after the cap
//!
//! Once many messages have backed off to `max_delay`, capping after jitter
//! would make them all wake up at exactly `max_delay` again, which is the
//! thundering herd jitter exists to prevent. The jittered delay can therefore
//! be up to `max_delay × (1 + jitter)`; size `max_delay` with that in mind.
//!
//! ```
//! use std::time::Duration;
//! use hookline_core::retry::RetryPolicy;
//!
//! let policy = RetryPolicy::default();
//! assert_eq!(policy.base_delay(1), Duration::from_secs(1));
//! assert_eq!(policy.base_delay(4), Duration::from_secs(8));
//! assert!(policy.next_delay(4).is_some());
//! assert_eq!(policy.next_delay(5), None); // five attempts made: give up
//! ```

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Nanoseconds per second, as the integer and float types the maths needs.
const NANOS_PER_SEC: u128 = 1_000_000_000;

/// How long to wait between delivery attempts, and when to stop trying.
///
/// The fields are public so the policy can be built from configuration, but
/// [`RetryPolicy::new`] / [`RetryPolicy::validate`] are the way to find out
/// whether a set of values makes sense. The delay methods never panic, even
/// for values `validate` would reject: out-of-range fields are clamped to the
/// nearest sensible value (jitter into `[0, 1]`, multiplier to at least 1,
/// `initial` to at most `max_delay`).
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Delay before the first retry, i.e. after the first failed attempt.
    pub initial: Duration,
    /// Growth factor between consecutive retries; must be finite and `>= 1`.
    pub multiplier: f64,
    /// Ceiling for the un-jittered delay and for a server's `Retry-After`.
    pub max_delay: Duration,
    /// Relative jitter: `0.2` spreads each delay uniformly over ±20 %.
    /// Must be in `[0, 1)`; `0` disables jitter.
    pub jitter: f64,
    /// Total number of delivery attempts, the first one included. `5` means
    /// attempts 1..=5 and at most four retries.
    pub max_attempts: u32,
}

/// Why [`RetryPolicy::new`] rejected a set of values.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RetryPolicyError {
    /// Jitter of 1 or more could produce a zero delay (hot retry loop); a
    /// negative or NaN jitter is meaningless.
    #[error("retry jitter must be in [0, 1), got {0}")]
    InvalidJitter(f64),
    /// A multiplier below 1 would make delays shrink as failures pile up.
    #[error("retry multiplier must be a finite number >= 1, got {0}")]
    InvalidMultiplier(f64),
    /// Zero attempts would mean never delivering at all.
    #[error("retry max_attempts must be at least 1")]
    ZeroMaxAttempts,
    /// The first delay would already be above the ceiling, which is almost
    /// certainly a unit mix-up in configuration.
    #[error("retry initial delay {initial:?} exceeds max_delay {max_delay:?}")]
    InitialExceedsMax {
        /// The configured initial delay.
        initial: Duration,
        /// The configured ceiling.
        max_delay: Duration,
    },
}

impl RetryPolicy {
    /// The project defaults: 1 s initial, ×2, 30 s ceiling, ±20 % jitter,
    /// 5 attempts. A `const` so it can seed other `const` configuration.
    pub const DEFAULT: Self = Self {
        initial: Duration::from_secs(1),
        multiplier: 2.0,
        max_delay: Duration::from_secs(30),
        jitter: 0.2,
        max_attempts: 5,
    };

    /// Builds a policy, rejecting values that would make the backoff
    /// misbehave (see [`RetryPolicyError`] for each rule).
    pub fn new(
        initial: Duration,
        multiplier: f64,
        max_delay: Duration,
        jitter: f64,
        max_attempts: u32,
    ) -> Result<Self, RetryPolicyError> {
        let policy = Self {
            initial,
            multiplier,
            max_delay,
            jitter,
            max_attempts,
        };
        policy.validate()?;
        Ok(policy)
    }

    /// Checks the rules [`RetryPolicy::new`] enforces; useful for a policy
    /// assembled field by field from configuration.
    pub fn validate(&self) -> Result<(), RetryPolicyError> {
        // Written as negated ranges so NaN is rejected too.
        if !(0.0..1.0).contains(&self.jitter) {
            return Err(RetryPolicyError::InvalidJitter(self.jitter));
        }
        if !(self.multiplier.is_finite() && self.multiplier >= 1.0) {
            return Err(RetryPolicyError::InvalidMultiplier(self.multiplier));
        }
        if self.max_attempts == 0 {
            return Err(RetryPolicyError::ZeroMaxAttempts);
        }
        if self.initial > self.max_delay {
            return Err(RetryPolicyError::InitialExceedsMax {
                initial: self.initial,
                max_delay: self.max_delay,
            });
        }
        Ok(())
    }

    /// Whether `attempts_made` failed attempts use up the budget, i.e. no
    /// retry is left. `true` from `max_attempts` on.
    pub fn attempts_exhausted(&self, attempts_made: u32) -> bool {
        attempts_made >= self.max_attempts
    }

    /// The un-jittered delay after `attempt` failed attempts:
    /// `min(initial × multiplier^(attempt − 1), max_delay)`, and zero for
    /// `attempt = 0`.
    ///
    /// It ignores `max_attempts` (use [`RetryPolicy::next_delay`] for the
    /// budget) and saturates at `max_delay` for any `u32`, never panicking.
    pub fn base_delay(&self, attempt: u32) -> Duration {
        let initial = self.initial.min(self.max_delay);
        if attempt == 0 || initial.is_zero() {
            return Duration::ZERO;
        }
        // `>=` is false for NaN, so a NaN multiplier degrades to a constant delay.
        let multiplier = if self.multiplier >= 1.0 {
            self.multiplier
        } else {
            1.0
        };
        // f64 is exact for integral nanosecond counts up to ~104 days and
        // overflows to infinity rather than wrapping, which the cap absorbs.
        let nanos = nanos_f64(initial) * multiplier.powf(f64::from(attempt - 1));
        if nanos.is_nan() || nanos >= nanos_f64(self.max_delay) {
            return self.max_delay;
        }
        duration_from_nanos_f64(nanos).min(self.max_delay)
    }

    /// The jittered delay after `attempt` failed attempts, with the random
    /// draw supplied by the caller so results are reproducible.
    ///
    /// `unit` in `[0, 1)` maps linearly onto the factor
    /// `[1 − jitter, 1 + jitter)` applied to [`RetryPolicy::base_delay`]:
    /// `0.0` gives the shortest delay, `0.5` exactly the base delay. Values
    /// outside the range are clamped and NaN counts as `0.5`. The result lies
    /// in `[base × (1 − jitter), max_delay × (1 + jitter)]`.
    pub fn delay_with_jitter(&self, attempt: u32, unit: f64) -> Duration {
        let base = self.base_delay(attempt);
        let jitter = if self.jitter.is_nan() {
            0.0
        } else {
            self.jitter.clamp(0.0, 1.0)
        };
        let unit = if unit.is_nan() {
            0.5
        } else {
            unit.clamp(0.0, 1.0)
        };
        // The clamp guards the documented bounds against float rounding.
        let factor = (1.0 - jitter + 2.0 * jitter * unit).clamp(1.0 - jitter, 1.0 + jitter);
        duration_from_nanos_f64(nanos_f64(base) * factor)
    }

    /// The delay before the next attempt after `attempt` failed attempts, or
    /// `None` when `attempt >= max_attempts` and the message should go to the
    /// dead-letter path instead. Jitter is drawn from `fastrand`.
    pub fn next_delay(&self, attempt: u32) -> Option<Duration> {
        if self.attempts_exhausted(attempt) {
            return None;
        }
        Some(self.delay_with_jitter(attempt, fastrand::f64()))
    }

    /// Like [`RetryPolicy::next_delay`], but honours a server's
    /// `Retry-After` (see [`parse_retry_after`]) when there is one.
    ///
    /// The server knows its own recovery time better than our backoff, so its
    /// value replaces the backoff, shorter or longer, without jitter. It is
    /// capped at `max_delay` because a hostile or buggy `Retry-After: 86400`
    /// must not park a message for a day. The attempt budget still applies:
    /// `None` once attempts are exhausted, whatever the server says.
    pub fn next_delay_with_retry_after(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
    ) -> Option<Duration> {
        if self.attempts_exhausted(attempt) {
            return None;
        }
        match retry_after {
            Some(server) => Some(server.min(self.max_delay)),
            None => self.next_delay(attempt),
        }
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Parses an HTTP `Retry-After` header value into a wait measured from `now`.
///
/// Accepted forms (surrounding spaces and tabs are ignored):
/// - delta-seconds, `"120"`; values too large for a `u64` saturate rather
///   than being rejected, since the caller caps them anyway;
/// - a decimal number of seconds, `"2.0"`: not RFC 9110, but Shopify's
///   Admin API sends it on 429s, so refusing it would drop a real hint;
/// - an IMF-fixdate, `"Wed, 21 Oct 2015 07:28:00 GMT"`; a date at or before
///   `now` yields [`Duration::ZERO`]. The weekday must be a valid name but is
///   not cross-checked against the date. The obsolete RFC 850 and asctime
///   forms are not accepted.
///
/// Anything else (signs, exponents, other time zones, out-of-range fields
/// such as 31 April) gives `None`, so the caller falls back to its backoff.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim_matches([' ', '\t']);
    if value.as_bytes().first()?.is_ascii_digit() {
        parse_delta_seconds(value)
    } else {
        let at = parse_imf_fixdate(value)?;
        Some(at.duration_since(now).unwrap_or(Duration::ZERO))
    }
}

/// `1*DIGIT [ "." 1*DIGIT ]`, saturating; digits past nanosecond precision
/// are ignored.
fn parse_delta_seconds(value: &str) -> Option<Duration> {
    let (whole, fraction) = match value.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (value, None),
    };
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs = whole.bytes().fold(0u64, |acc, b| {
        acc.saturating_mul(10).saturating_add(u64::from(b - b'0'))
    });
    let mut nanos = 0u32;
    if let Some(fraction) = fraction {
        if fraction.is_empty() || !fraction.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let mut scale = 100_000_000u32;
        for b in fraction.bytes().take(9) {
            nanos += u32::from(b - b'0') * scale;
            scale /= 10;
        }
    }
    Some(Duration::new(secs, nanos))
}

/// Parses `IMF-fixdate = day-name "," SP DD SP Mon SP YYYY SP hh:mm:ss SP "GMT"`
/// (RFC 9110 §5.6.7), case-sensitively as the RFC specifies.
fn parse_imf_fixdate(value: &str) -> Option<SystemTime> {
    const DAY_NAMES: [&[u8]; 7] = [b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun"];
    const MONTHS: [&[u8]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];

    // Working on bytes keeps multi-byte garbage from hitting a char boundary.
    let b = value.as_bytes();
    if b.len() != 29
        || !DAY_NAMES.contains(&&b[0..3])
        || &b[3..5] != b", "
        || b[7] != b' '
        || b[11] != b' '
        || b[16] != b' '
        || b[19] != b':'
        || b[22] != b':'
        || &b[25..29] != b" GMT"
    {
        return None;
    }
    let day = ascii_number(&b[5..7])?;
    let month = MONTHS.iter().position(|m| *m == &b[8..11])? + 1;
    let month = u32::try_from(month).ok()?;
    let year = ascii_number(&b[12..16])?;
    let hour = ascii_number(&b[17..19])?;
    let minute = ascii_number(&b[20..22])?;
    let second = ascii_number(&b[23..25])?;
    // 60 admits a leap second, which RFC 5322 time-of-day allows.
    if day == 0 || day > days_in_month(year, month) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }

    let days = days_from_civil(i64::from(year), month, day);
    let secs = days * 86_400 + i64::from(hour) * 3_600 + i64::from(minute) * 60 + i64::from(second);
    let offset = Duration::from_secs(secs.unsigned_abs());
    if secs >= 0 {
        UNIX_EPOCH.checked_add(offset)
    } else {
        UNIX_EPOCH.checked_sub(offset)
    }
}

/// A fixed-width run of ASCII digits as a number.
fn ascii_number(digits: &[u8]) -> Option<u32> {
    digits.iter().try_fold(0u32, |acc, &b| {
        b.is_ascii_digit().then(|| acc * 10 + u32::from(b - b'0'))
    })
}

fn is_leap_year(year: u32) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 in the proleptic Gregorian calendar, after Howard
/// Hinnant's `days_from_civil`: shifting the year to start in March puts the
/// leap day last, so each 400-year era is a plain arithmetic progression.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let month_from_march = if month > 2 { month - 3 } else { month + 9 };
    let day_of_year = (153 * month_from_march + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

fn nanos_f64(duration: Duration) -> f64 {
    duration.as_nanos() as f64
}

/// Rounds to the nearest nanosecond, saturating at zero and `Duration::MAX`
/// (NaN becomes zero) instead of panicking like `Duration::from_secs_f64`.
fn duration_from_nanos_f64(nanos: f64) -> Duration {
    if nanos.is_nan() || nanos <= 0.0 {
        return Duration::ZERO;
    }
    // Float-to-int `as` casts saturate, so a huge value cannot wrap.
    let nanos = nanos.round() as u128;
    match u64::try_from(nanos / NANOS_PER_SEC) {
        // The remainder is below 10^9, so it fits in u32.
        Ok(secs) => Duration::new(secs, (nanos % NANOS_PER_SEC) as u32),
        Err(_) => Duration::MAX,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;
    const SECS: fn(u64) -> Duration = Duration::from_secs;

    fn no_jitter() -> RetryPolicy {
        RetryPolicy {
            jitter: 0.0,
            ..RetryPolicy::default()
        }
    }

    /// Inverse of `days_from_civil`, only needed to build test dates.
    fn civil_from_days(days: i64) -> (i64, u32, u32) {
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        (year, month, day)
    }

    fn imf_fixdate(unix_secs: i64) -> String {
        const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        let days = unix_secs.div_euclid(86_400);
        let rem = unix_secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        format!(
            "{}, {d:02} {} {y:04} {:02}:{:02}:{:02} GMT",
            DAYS[days.rem_euclid(7) as usize],
            MONTHS[m as usize - 1],
            rem / 3_600,
            rem % 3_600 / 60,
            rem % 60
        )
    }

    fn at(unix_secs: u64) -> SystemTime {
        UNIX_EPOCH + SECS(unix_secs)
    }

    #[test]
    fn defaults_match_the_issue() {
        let p = RetryPolicy::default();
        assert_eq!(p.initial, SECS(1));
        assert_eq!(p.multiplier, 2.0);
        assert_eq!(p.max_delay, SECS(30));
        assert_eq!(p.jitter, 0.2);
        assert_eq!(p.max_attempts, 5);
        assert_eq!(p.validate(), Ok(()));
    }

    #[test]
    fn default_base_delays_are_exact() {
        let p = RetryPolicy::default();
        let expected = [0, 1, 2, 4, 8, 16, 30, 30, 30, 30, 30];
        for (attempt, secs) in (0u32..).zip(expected) {
            assert_eq!(p.base_delay(attempt), SECS(secs), "attempt {attempt}");
        }
        assert_eq!(p.base_delay(10), SECS(30));
        assert_eq!(p.base_delay(u32::MAX), SECS(30));
    }

    #[test]
    fn default_schedule_without_jitter_is_1_2_4_8_then_none() {
        let p = no_jitter();
        let schedule: Vec<_> = (1..=6).map(|a| p.next_delay(a)).collect();
        assert_eq!(
            schedule,
            [
                Some(SECS(1)),
                Some(SECS(2)),
                Some(SECS(4)),
                Some(SECS(8)),
                None,
                None
            ]
        );
    }

    #[test]
    fn default_next_delay_stays_within_twenty_percent() {
        let p = RetryPolicy::default();
        for _ in 0..200 {
            for (attempt, secs) in [(1, 1), (2, 2), (3, 4), (4, 8)] {
                let d = p.next_delay(attempt).unwrap();
                assert!(d >= SECS(secs).mul_f64(0.8) && d <= SECS(secs).mul_f64(1.2));
            }
            assert_eq!(p.next_delay(5), None);
        }
    }

    #[test]
    fn jitter_unit_maps_linearly() {
        let p = RetryPolicy::default();
        assert_eq!(p.delay_with_jitter(1, 0.0), MS(800));
        assert_eq!(p.delay_with_jitter(1, 0.25), MS(900));
        assert_eq!(p.delay_with_jitter(1, 0.5), SECS(1));
        assert_eq!(p.delay_with_jitter(3, 0.75), MS(4_400));
        assert_eq!(p.delay_with_jitter(9, 0.0), SECS(24));
        assert_eq!(p.delay_with_jitter(9, 1.0), SECS(36));
        // Out-of-range draws are clamped, not trusted.
        assert_eq!(p.delay_with_jitter(1, -3.0), MS(800));
        assert_eq!(p.delay_with_jitter(1, 7.0), MS(1_200));
        assert_eq!(p.delay_with_jitter(1, f64::NAN), SECS(1));
        assert_eq!(p.delay_with_jitter(0, 0.9), Duration::ZERO);
    }

    #[test]
    fn non_integral_multiplier() {
        let p = RetryPolicy::new(MS(100), 1.5, SECS(1), 0.0, 10).unwrap();
        let got: Vec<_> = (1..=7).map(|a| p.base_delay(a)).collect();
        let want = [100, 150, 225, 338, 506, 759, 1_000].map(MS);
        // 337.5 ms and 506.25 ms round to the nearest nanosecond, not millisecond.
        assert_eq!(got[..3], want[..3]);
        assert_eq!(got[3], Duration::from_micros(337_500));
        assert_eq!(got[4], Duration::from_nanos(506_250_000));
        assert_eq!(got[5], Duration::from_nanos(759_375_000));
        assert_eq!(got[6], want[6]);
    }

    #[test]
    fn new_rejects_bad_values() {
        let ok = |j, m, a, i| RetryPolicy::new(i, m, SECS(30), j, a);
        assert!(ok(0.0, 1.0, 1, SECS(30)).is_ok());
        assert!(ok(0.999, 10.0, 1, Duration::ZERO).is_ok());
        for jitter in [1.0, -0.1, f64::NAN, f64::INFINITY] {
            assert!(matches!(
                ok(jitter, 2.0, 5, SECS(1)),
                Err(RetryPolicyError::InvalidJitter(_))
            ));
        }
        for multiplier in [0.99, 0.0, -2.0, f64::NAN, f64::INFINITY] {
            assert!(matches!(
                ok(0.2, multiplier, 5, SECS(1)),
                Err(RetryPolicyError::InvalidMultiplier(_))
            ));
        }
        assert_eq!(
            ok(0.2, 2.0, 0, SECS(1)),
            Err(RetryPolicyError::ZeroMaxAttempts)
        );
        assert_eq!(
            ok(0.2, 2.0, 5, SECS(31)),
            Err(RetryPolicyError::InitialExceedsMax {
                initial: SECS(31),
                max_delay: SECS(30)
            })
        );
        assert_eq!(
            RetryPolicyError::ZeroMaxAttempts.to_string(),
            "retry max_attempts must be at least 1"
        );
    }

    #[test]
    fn invalid_public_fields_do_not_panic() {
        let weird = [
            RetryPolicy {
                multiplier: f64::NAN,
                jitter: f64::NAN,
                ..RetryPolicy::DEFAULT
            },
            RetryPolicy {
                multiplier: f64::INFINITY,
                jitter: 7.0,
                ..RetryPolicy::DEFAULT
            },
            RetryPolicy {
                multiplier: -1.0,
                jitter: -1.0,
                initial: SECS(100),
                max_attempts: 0,
                ..RetryPolicy::DEFAULT
            },
            RetryPolicy {
                initial: Duration::MAX,
                max_delay: Duration::MAX,
                multiplier: 1e300,
                ..RetryPolicy::DEFAULT
            },
        ];
        for p in weird {
            for attempt in [0, 1, 2, 64, 1_000, u32::MAX] {
                assert!(p.base_delay(attempt) <= p.max_delay);
                let _ = p.delay_with_jitter(attempt, 0.999);
                let _ = p.next_delay(attempt);
            }
        }
        let huge = RetryPolicy {
            initial: Duration::MAX,
            max_delay: Duration::MAX,
            ..RetryPolicy::DEFAULT
        };
        assert_eq!(huge.delay_with_jitter(3, 1.0), Duration::MAX);
    }

    #[test]
    fn attempts_exhausted_counts_attempts_made() {
        let p = RetryPolicy::default();
        assert!(!p.attempts_exhausted(0));
        assert!(!p.attempts_exhausted(4));
        assert!(p.attempts_exhausted(5));
        assert!(p.attempts_exhausted(u32::MAX));
    }

    #[test]
    fn retry_after_overrides_and_is_capped() {
        let p = RetryPolicy::default();
        assert_eq!(
            p.next_delay_with_retry_after(1, Some(SECS(5))),
            Some(SECS(5))
        );
        // Shorter than our backoff is honoured too: the server knows best.
        assert_eq!(p.next_delay_with_retry_after(4, Some(MS(10))), Some(MS(10)));
        assert_eq!(
            p.next_delay_with_retry_after(1, Some(SECS(7_200))),
            Some(SECS(30))
        );
        assert_eq!(
            p.next_delay_with_retry_after(1, Some(Duration::MAX)),
            Some(SECS(30))
        );
        assert_eq!(p.next_delay_with_retry_after(5, Some(SECS(1))), None);
        let fallback = no_jitter().next_delay_with_retry_after(3, None);
        assert_eq!(fallback, Some(SECS(4)));
    }

    #[test]
    fn parses_delta_seconds() {
        let now = at(1_700_000_000);
        assert_eq!(parse_retry_after("120", now), Some(SECS(120)));
        assert_eq!(parse_retry_after("0", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after(" \t120 ", now), Some(SECS(120)));
        assert_eq!(parse_retry_after("2.0", now), Some(SECS(2)));
        assert_eq!(parse_retry_after("1.5", now), Some(MS(1_500)));
        assert_eq!(
            parse_retry_after("0.1234567891", now),
            Some(Duration::from_nanos(123_456_789))
        );
        assert_eq!(
            parse_retry_after("99999999999999999999999999", now),
            Some(Duration::from_secs(u64::MAX))
        );
    }

    #[test]
    fn parses_imf_fixdate() {
        // RFC 9110's own example, and a second well-known instant.
        let rfc_example = 784_111_777;
        let later = parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", at(rfc_example - 90));
        assert_eq!(later, Some(SECS(90)));

        let date = "Wed, 21 Oct 2015 07:28:00 GMT";
        let instant = 1_445_412_480;
        assert_eq!(parse_retry_after(date, at(instant - 120)), Some(SECS(120)));
        assert_eq!(
            parse_retry_after(date, at(instant) - MS(250)),
            Some(MS(250))
        );
        assert_eq!(parse_retry_after(date, at(instant)), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after(date, at(instant + 3_600)),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_retry_after("Thu, 29 Feb 2024 23:59:60 GMT", at(1_709_251_140)),
            Some(SECS(60)),
            "leap day and leap second"
        );
        assert_eq!(
            parse_retry_after("Thu, 01 Jan 1970 00:00:00 GMT", UNIX_EPOCH - SECS(5)),
            Some(SECS(5))
        );
    }

    #[test]
    fn rejects_garbage() {
        let now = at(1_445_412_480);
        for bad in [
            "",
            "   ",
            "-1",
            "+5",
            "1e3",
            "12a",
            "1.",
            ".5",
            "1.2.3",
            "soon",
            "Wed, 21 Oct 2015 07:28:00 UTC",
            "Wed, 21 oct 2015 07:28:00 GMT",
            "wed, 21 Oct 2015 07:28:00 GMT",
            "Wed,  21 Oct 2015 07:28:00 GMT",
            "Wed, 32 Oct 2015 07:28:00 GMT",
            "Wed, 00 Oct 2015 07:28:00 GMT",
            "Fri, 31 Apr 2015 07:28:00 GMT",
            "Sun, 29 Feb 2015 07:28:00 GMT",
            "Mon, 29 Feb 1900 07:28:00 GMT",
            "Wed, 21 Oct 2015 24:00:00 GMT",
            "Wed, 21 Oct 2015 07:60:00 GMT",
            "Wed, 21 Oct 2015 07:28:61 GMT",
            "Wed, 21 Oct 2015 7:28:00 GMT",
            "Wed, 21 Oct 15 07:28:00 GMT",
            "Wednesday, 21-Oct-15 07:28:00 GMT",
            "Wed Oct 21 07:28:00 2015",
            "Wéd, 21 Oct 2015 07:28:00 GMT",
            "Wed, 21 Oct 2015 07:28:00 GMT\u{e9}",
        ] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
    }

    #[test]
    fn calendar_arithmetic() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(2000, 2, 29), 11_016);
        assert_eq!(days_from_civil(1600, 1, 1), -135_140);
        assert_eq!(imf_fixdate(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(imf_fixdate(1_445_412_480), "Wed, 21 Oct 2015 07:28:00 GMT");
    }

    fn any_policy() -> impl Strategy<Value = RetryPolicy> {
        (
            0u64..20_000,
            1.0f64..8.0,
            0u64..600_000,
            0.0f64..1.0,
            1u32..50,
        )
            .prop_map(|(initial_ms, multiplier, extra_ms, jitter, max_attempts)| {
                RetryPolicy::new(
                    MS(initial_ms),
                    multiplier,
                    MS(initial_ms + extra_ms),
                    jitter,
                    max_attempts,
                )
                .unwrap()
            })
    }

    proptest! {
        #[test]
        fn jittered_delay_is_bounded(p in any_policy(), attempt: u32, unit in 0.0f64..1.0) {
            let d = nanos_f64(p.delay_with_jitter(attempt, unit));
            let base = nanos_f64(p.base_delay(attempt));
            // One nanosecond of slack for rounding to whole nanoseconds.
            prop_assert!(d <= nanos_f64(p.max_delay) * (1.0 + p.jitter) + 1.0);
            prop_assert!(d >= base * (1.0 - p.jitter) - 1.0);
            prop_assert!(d <= base * (1.0 + p.jitter) + 1.0);
        }

        #[test]
        fn base_delay_is_monotonic_and_capped(p in any_policy(), attempt in 0u32..u32::MAX) {
            let here = p.base_delay(attempt);
            prop_assert!(here <= p.base_delay(attempt + 1));
            prop_assert!(here <= p.max_delay);
            if attempt >= 1 {
                prop_assert!(here >= p.initial);
            }
        }

        #[test]
        fn next_delay_honours_the_attempt_budget(p in any_policy(), attempt in 0u32..100) {
            let next = p.next_delay(attempt);
            prop_assert_eq!(next.is_some(), attempt < p.max_attempts);
            prop_assert_eq!(next.is_none(), p.attempts_exhausted(attempt));
            if let Some(d) = next {
                prop_assert!(nanos_f64(d) <= nanos_f64(p.max_delay) * (1.0 + p.jitter) + 1.0);
            }
        }

        #[test]
        fn retry_after_never_exceeds_max_delay(
            p in any_policy(),
            attempt in 0u32..100,
            secs: u64,
            nanos in 0u32..1_000_000_000,
            present: bool,
        ) {
            let server = present.then(|| Duration::new(secs, nanos));
            let got = p.next_delay_with_retry_after(attempt, server);
            prop_assert_eq!(got.is_some(), attempt < p.max_attempts);
            if let (Some(got), Some(server)) = (got, server) {
                prop_assert!(got <= p.max_delay);
                prop_assert_eq!(got, server.min(p.max_delay));
            }
        }

        #[test]
        fn imf_fixdate_round_trips(
            // 0001-01-01 ..= 9999-12-31, the years a 4-digit field can hold.
            target in -62_135_596_800i64..253_402_300_800,
            ahead in 0u64..1_000_000,
        ) {
            let text = imf_fixdate(target);
            let target_time = if target >= 0 {
                UNIX_EPOCH + SECS(target as u64)
            } else {
                UNIX_EPOCH - SECS(target.unsigned_abs())
            };
            prop_assert_eq!(parse_retry_after(&text, target_time - SECS(ahead)), Some(SECS(ahead)));
            prop_assert_eq!(parse_retry_after(&text, target_time + SECS(ahead)), Some(Duration::ZERO));
        }

        #[test]
        fn delta_seconds_round_trip(secs: u64) {
            prop_assert_eq!(parse_retry_after(&secs.to_string(), UNIX_EPOCH), Some(SECS(secs)));
        }

        #[test]
        fn parser_never_panics(text in "\\PC{0,40}", secs: u32) {
            let _ = parse_retry_after(&text, at(u64::from(secs)));
        }
    }
}
