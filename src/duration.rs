//! Durations from the config: bounded when read, and date arithmetic with
//! them that cannot panic.
//!
//! `chrono`'s `DateTime + TimeDelta` panics on overflow, and a
//! `[soak] duration = "1000000000d"` once passed `validate` and then took
//! `watch` down with exit 101. So every duration key is refused above
//! [`MAX`] (10 years: far beyond any soak, window or timeout, and far inside
//! every range the tool computes in: chrono's ±262,000 years, JetStream's
//! i64 nanoseconds, `Instant`), and arithmetic on configured values goes
//! through [`after`], [`before`] and [`delta`], which saturate instead.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

/// The longest duration any config key (and `--window`) accepts.
pub const MAX: Duration = Duration::from_secs(3650 * 24 * 3600);

/// [`MAX`] as people read it.
pub const MAX_SHOWN: &str = "3650d (10 years)";

/// A duration over [`MAX`]: refused wherever one is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("longer than the longest duration soakwatch accepts, {MAX_SHOWN} (longer ones overflow its date arithmetic)")]
pub struct TooLong;

/// Why `d` is refused, when it is over [`MAX`].
pub fn check(d: Duration) -> Result<(), TooLong> {
    if d > MAX {
        Err(TooLong)
    } else {
        Ok(())
    }
}

/// `d` as a chrono delta, [`TimeDelta::MAX`] when it does not fit.
pub fn delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

/// `t + d`, the latest representable time when that overflows.
pub fn after(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    t.checked_add_signed(delta(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// `t - d`, the earliest representable time when that overflows.
pub fn before(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    t.checked_sub_signed(delta(d))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// A duration value of the config (`Duration`, `Option<Duration>`) that can
/// say its length, for [`bounded`].
pub trait Bounded {
    /// The duration held, if any.
    fn length(&self) -> Option<Duration>;
}

impl Bounded for Duration {
    fn length(&self) -> Option<Duration> {
        Some(*self)
    }
}

impl Bounded for Option<Duration> {
    fn length(&self) -> Option<Duration> {
        *self
    }
}

/// serde `with` module for config durations: humantime syntax
/// (`humantime_serde`) and at most [`MAX`], so the refusal is located with
/// file, line and key like any other bad value.
pub mod bounded {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::duration::Bounded;

    /// Reads a humantime duration and refuses one over [`crate::duration::MAX`].
    pub fn deserialize<'de, D, T>(d: D) -> Result<T, D::Error>
    where
        D: Deserializer<'de>,
        T: Bounded,
        humantime_serde::Serde<T>: Deserialize<'de>,
    {
        let v = humantime_serde::Serde::<T>::deserialize(d)?.into_inner();
        match v.length().map(crate::duration::check) {
            Some(Err(e)) => Err(serde::de::Error::custom(e)),
            _ => Ok(v),
        }
    }

    /// Writes it as humantime does.
    pub fn serialize<S, T>(v: &T, s: S) -> Result<S::Ok, S::Error>
    where
        S: Serializer,
        for<'a> humantime_serde::Serde<&'a T>: Serialize,
    {
        humantime_serde::serialize(v, s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_maximum_is_refused_past_and_fits_every_range() {
        assert!(check(MAX).is_ok());
        let e = check(MAX + Duration::from_secs(1)).expect_err("over");
        assert_eq!(e, TooLong);
        assert!(e.to_string().contains("3650d (10 years)"), "{e}");
        // JetStream keeps ages in i64 nanoseconds: MAX and a week more fit.
        assert!((MAX + Duration::from_secs(7 * 86_400)).as_nanos() < i64::MAX as u128 / 4);
        let now = Utc::now();
        assert!(now.checked_add_signed(delta(MAX * 4)).is_some());
        assert!(now.checked_sub_signed(delta(MAX * 4)).is_some());
    }

    #[test]
    fn arithmetic_saturates() {
        let now = Utc::now();
        let huge = Duration::from_secs(u64::MAX);
        assert_eq!(delta(huge), TimeDelta::MAX);
        assert_eq!(after(now, huge), DateTime::<Utc>::MAX_UTC);
        assert_eq!(before(now, huge), DateTime::<Utc>::MIN_UTC);
        let d = Duration::from_secs(90);
        assert_eq!(after(now, d), now + TimeDelta::seconds(90));
        assert_eq!(before(now, d), now - TimeDelta::seconds(90));
    }

    #[derive(serde::Deserialize, Debug)]
    struct T {
        #[serde(with = "bounded")]
        d: Duration,
        #[serde(default, with = "bounded")]
        o: Option<Duration>,
    }

    #[test]
    fn the_serde_module_refuses_what_is_too_long() {
        let ok: T = toml::from_str("d = \"3650d\"\no = \"1s\"").expect("ok");
        assert_eq!(ok.d, MAX);
        assert_eq!(ok.o, Some(Duration::from_secs(1)));
        let e = toml::from_str::<T>("d = \"1000000000d\"").expect_err("too long");
        assert!(e.to_string().contains("10 years"), "{e}");
        let e = toml::from_str::<T>("d = \"1s\"\no = \"3651d\"").expect_err("too long");
        assert!(e.to_string().contains("10 years"), "{e}");
    }
}
