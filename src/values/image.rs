//! The life of a baked image.

use super::without_leading_zeros;
use std::ops::RangeInclusive;

/// Days after its build at which an image is deprecated. EC2 accepts a
/// deprecation date at most 10 years ahead (3,650 days stay inside that
/// whatever the leap years); an image deprecated within a week of its
/// build would be deprecated for most of the time it runs, and the mark
/// would say nothing.
pub const DEPRECATE_AFTER_DAYS: RangeInclusive<u32> = 7..=3650;
/// What `ami.deprecate_after_days` is when the spec does not say: three
/// monthly rebuilds missed in a row.
pub const DEFAULT_DEPRECATE_AFTER_DAYS: u32 = 90;

/// Why text is not a number of days until deprecation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeprecationProblem {
    #[error(
        "`{text}` has a leading zero, which some tools read as an octal number; write `{fixed}`"
    )]
    LeadingZero { text: String, fixed: String },
    #[error(
        "`{text}` is not a number of days; write a whole number from {} to {}, such as `{DEFAULT_DEPRECATE_AFTER_DAYS}`",
        DEPRECATE_AFTER_DAYS.start(),
        DEPRECATE_AFTER_DAYS.end()
    )]
    NotDays { text: String },
    #[error(
        "{days} days is outside {} to {}: EC2 takes a deprecation date at most 10 years ahead, and an image deprecated within a week of its build is deprecated for most of its service",
        DEPRECATE_AFTER_DAYS.start(),
        DEPRECATE_AFTER_DAYS.end()
    )]
    OutOfRange { days: u64 },
}

/// Whole days within [`DEPRECATE_AFTER_DAYS`], written without leading zeros.
pub fn deprecate_after_days(text: &str) -> Result<u32, DeprecationProblem> {
    if let Some(fixed) = without_leading_zeros(text).filter(|_| !text.contains('-')) {
        return Err(DeprecationProblem::LeadingZero {
            text: text.into(),
            fixed,
        });
    }
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(DeprecationProblem::NotDays { text: text.into() });
    }
    let days: u64 = text.parse().unwrap_or(u64::MAX);
    match u32::try_from(days) {
        Ok(d) if DEPRECATE_AFTER_DAYS.contains(&d) => Ok(d),
        _ => Err(DeprecationProblem::OutOfRange { days }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_within_the_range_and_nothing_else() {
        assert_eq!(deprecate_after_days("7"), Ok(7));
        assert_eq!(deprecate_after_days("90"), Ok(90));
        assert_eq!(deprecate_after_days("3650"), Ok(3650));
        for bad in ["6", "0", "3651", "99999999999999999999999"] {
            assert!(
                matches!(
                    deprecate_after_days(bad),
                    Err(DeprecationProblem::OutOfRange { .. })
                ),
                "{bad}"
            );
        }
        for bad in ["", "-7", "1.5", "90d", " 90", "0x10"] {
            assert!(
                matches!(
                    deprecate_after_days(bad),
                    Err(DeprecationProblem::NotDays { .. })
                ),
                "{bad}"
            );
        }
        assert_eq!(
            deprecate_after_days("090"),
            Err(DeprecationProblem::LeadingZero {
                text: "090".into(),
                fixed: "90".into()
            })
        );
    }
}
