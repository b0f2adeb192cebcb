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

#[cfg(test)]
mod tests {
    use super::attach_timeout;

    #[test]
    fn seconds_within_the_range_and_nothing_else() {
        assert_eq!(attach_timeout("30"), Ok(30));
        assert_eq!(attach_timeout("900"), Ok(900));
        for bad in ["29", "901", "060", "1e2", "-30", "", "180s"] {
            assert!(attach_timeout(bad).is_err(), "{bad}");
        }
    }
}
