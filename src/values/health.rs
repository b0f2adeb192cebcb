//! Settings of the health check.

use super::without_leading_zeros;
use std::ops::RangeInclusive;

/// Fewest seconds between two health checks: each costs a little CPU
/// (one `iptables-save`), and a repair must finish before the next.
pub const HEALTH_INTERVAL_MIN: u32 = 5;
/// Most seconds between two health checks: drift is found within two
/// intervals, so a longer one would leave it unnoticed for too long.
pub const HEALTH_INTERVAL_MAX: u32 = 300;
/// Seconds between two health checks when the spec says nothing.
pub const HEALTH_INTERVAL_DEFAULT: u32 = 15;

/// Why text is not a health-check interval.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IntervalProblem {
    #[error(
        "`{text}` has a leading zero, which some tools read as an octal number; write `{fixed}`"
    )]
    LeadingZero { text: String, fixed: String },
    #[error(
        "`{text}` is not a number of seconds; write a whole number from {HEALTH_INTERVAL_MIN} to {HEALTH_INTERVAL_MAX}, such as `{HEALTH_INTERVAL_DEFAULT}`"
    )]
    NotSeconds { text: String },
    #[error(
        "{seconds} seconds is outside {HEALTH_INTERVAL_MIN} to {HEALTH_INTERVAL_MAX}: a shorter interval spends CPU on checks, a longer one leaves drift unnoticed for minutes"
    )]
    OutOfRange { seconds: u64 },
}

/// Seconds between two health checks: a whole number from
/// [`HEALTH_INTERVAL_MIN`] to [`HEALTH_INTERVAL_MAX`].
pub fn health_interval(text: &str) -> Result<u32, IntervalProblem> {
    whole_seconds(text, HEALTH_INTERVAL_MIN..=HEALTH_INTERVAL_MAX)
}

/// A whole number of seconds within `range`, written without leading zeros.
pub fn whole_seconds(text: &str, range: RangeInclusive<u32>) -> Result<u32, IntervalProblem> {
    if let Some(fixed) = without_leading_zeros(text).filter(|_| !text.contains('-')) {
        return Err(IntervalProblem::LeadingZero {
            text: text.into(),
            fixed,
        });
    }
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(IntervalProblem::NotSeconds { text: text.into() });
    }
    let seconds: u64 = text.parse().unwrap_or(u64::MAX);
    match u32::try_from(seconds) {
        Ok(s) if range.contains(&s) => Ok(s),
        _ => Err(IntervalProblem::OutOfRange { seconds }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_are_whole_seconds_within_bounds() {
        assert_eq!(health_interval("5"), Ok(5));
        assert_eq!(health_interval("15"), Ok(15));
        assert_eq!(health_interval("300"), Ok(300));
        for bad in ["4", "0", "301", "99999999999999999999999"] {
            assert!(
                matches!(
                    health_interval(bad),
                    Err(IntervalProblem::OutOfRange { .. })
                ),
                "{bad}"
            );
        }
        for bad in ["", "-5", "1.5", "15s", " 15", "0x10"] {
            assert!(
                matches!(
                    health_interval(bad),
                    Err(IntervalProblem::NotSeconds { .. })
                ),
                "{bad}"
            );
        }
        assert_eq!(
            health_interval("015"),
            Err(IntervalProblem::LeadingZero {
                text: "015".into(),
                fixed: "15".into()
            })
        );
    }
}
