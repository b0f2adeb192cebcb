//! The floating interface's settings.

use std::ops::RangeInclusive;

/// Seconds a booting instance may wait for the floating interface.
pub const ATTACH_TIMEOUT: RangeInclusive<u32> = 30..=900;
/// What `failover.attach_timeout` is when the spec does not say.
pub const DEFAULT_ATTACH_TIMEOUT: u32 = 180;

/// Why text is not an attach timeout.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{text}` is not a number of seconds from {} to {}: long enough for EC2 to detach the interface from an instance that is shutting down, short enough that a stuck boot is replaced",
    ATTACH_TIMEOUT.start(),
    ATTACH_TIMEOUT.end()
)]
pub struct AttachTimeoutProblem {
    pub text: String,
}

/// Whole seconds within [`ATTACH_TIMEOUT`], written without leading zeros.
pub fn attach_timeout(text: &str) -> Result<u32, AttachTimeoutProblem> {
    let text = text.trim();
    super::health::whole_seconds(text, ATTACH_TIMEOUT)
        .map_err(|_| AttachTimeoutProblem { text: text.into() })
}

/// Milliseconds between two VRRP adverts of the active of a standby pair.
pub const ADVERT_INTERVAL_MS: RangeInclusive<u32> = 100..=5000;
/// What `failover.advert_interval_ms` is when the spec does not say: the
/// standby declares the active dead after about 3.5 intervals of silence
/// (VRRP's master-down interval), so a little over a second.
pub const DEFAULT_ADVERT_INTERVAL_MS: u32 = 300;

/// Why text is not an advert interval.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{text}` is not a number of milliseconds from {} to {} in steps of 10 (VRRP version 3 counts in hundredths of a second); the standby takes over about 3.5 intervals after the active falls silent",
    ADVERT_INTERVAL_MS.start(),
    ADVERT_INTERVAL_MS.end()
)]
pub struct AdvertIntervalProblem {
    pub text: String,
}

/// Whole milliseconds within [`ADVERT_INTERVAL_MS`], a multiple of 10,
/// written without leading zeros.
pub fn advert_interval_ms(text: &str) -> Result<u32, AdvertIntervalProblem> {
    let text = text.trim();
    super::health::whole_seconds(text, ADVERT_INTERVAL_MS)
        .ok()
        .filter(|ms| ms % 10 == 0)
        .ok_or_else(|| AdvertIntervalProblem { text: text.into() })
}

#[cfg(test)]
mod tests {
    use super::{advert_interval_ms, attach_timeout};

    #[test]
    fn advert_intervals_are_centiseconds_within_the_range() {
        assert_eq!(advert_interval_ms("100"), Ok(100));
        assert_eq!(advert_interval_ms("5000"), Ok(5000));
        assert_eq!(advert_interval_ms("300"), Ok(300));
        for bad in ["90", "5010", "305", "0300", "1s", "", "-300", "0.5"] {
            assert!(advert_interval_ms(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn seconds_within_the_range_and_nothing_else() {
        assert_eq!(attach_timeout("30"), Ok(30));
        assert_eq!(attach_timeout("900"), Ok(900));
        for bad in ["29", "901", "060", "1e2", "-30", "", "180s"] {
            assert!(attach_timeout(bad).is_err(), "{bad}");
        }
    }
}
