//! Parsers for the single values a spec holds: ports, targets, names, AWS
//! identifiers, kernel settings, the health-check interval, the image's
//! deprecation and free text.
//!
//! Each takes the text as written and returns the typed value or a typed
//! problem whose message says what to write instead. None of them knows
//! about YAML, locations or other fields, so each rule is tested on its
//! own here and reused by every section of the spec that holds such a
//! value; [`crate::validate`] adds where the value was written and the
//! checks that need more than one field.

mod aws;
mod failover;
mod health;
mod image;
mod ports;
mod sysctl;
mod text;

pub use aws::{
    AccountIdProblem, AmiNameProblem, InstanceTypeProblem, RECOVERABLE_FAMILIES, Region,
    RegionProblem, SubnetIdProblem, TagKeyProblem, TagValueProblem, VpcBlockProblem, account_id,
    ami_name_prefix, default_instance_type, instance_type, recoverable, subnet_id, tag_key,
    tag_value, vpc_block,
};
pub use failover::{
    ADVERT_INTERVAL_MS, ATTACH_TIMEOUT, AdvertIntervalProblem, AttachTimeoutProblem,
    DEFAULT_ADVERT_INTERVAL_MS, DEFAULT_ATTACH_TIMEOUT, advert_interval_ms, attach_timeout,
};
pub use health::{
    HEALTH_INTERVAL_DEFAULT, HEALTH_INTERVAL_MAX, HEALTH_INTERVAL_MIN, IntervalProblem,
    health_interval,
};
pub use image::{
    DEFAULT_DEPRECATE_AFTER_DAYS, DEPRECATE_AFTER_DAYS, DeprecationProblem, deprecate_after_days,
};
pub use ports::{PortsProblem, Target, TargetProblem, listen_ports, ports};
pub use sysctl::{SysctlKeyProblem, SysctlValueProblem, sysctl_key, sysctl_value};
pub use text::{
    FORWARD_NAME_MAX, MAX_TEXT_CHARS, NameProblem, NotOneOf, SITE_NAME_MAX, TextProblem, choice,
    forward_name, free_text, name, site_name,
};

/// Whether `s` has `min` to `max` characters, all of them `ok`.
fn word(s: &str, min: usize, max: usize, ok: impl Fn(char) -> bool) -> bool {
    let n = s.chars().count();
    n >= min && n <= max && s.chars().all(ok)
}

/// `text` without the leading zeros of its numbers, when it is a number
/// or a range (`080`, `0443-0450`) written with them: some tools read such
/// a number as octal, so natbake refuses it and suggests this instead.
fn without_leading_zeros(text: &str) -> Option<String> {
    let parts: Vec<&str> = text.split('-').collect();
    let padded =
        |p: &&str| p.len() > 1 && p.starts_with('0') && p.bytes().all(|b| b.is_ascii_digit());
    if parts.len() > 2 || !parts.iter().any(padded) {
        return None;
    }
    let fixed: Vec<&str> = parts
        .iter()
        .map(|p| match p.trim_start_matches('0') {
            "" => "0",
            t => t,
        })
        .collect();
    Some(fixed.join("-"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leading_zeros_are_found_in_numbers_and_ranges_only() {
        assert_eq!(without_leading_zeros("080").as_deref(), Some("80"));
        assert_eq!(without_leading_zeros("00").as_deref(), Some("0"));
        assert_eq!(
            without_leading_zeros("08000-08010").as_deref(),
            Some("8000-8010")
        );
        assert_eq!(without_leading_zeros("80-090").as_deref(), Some("80-90"));
        for none in ["80", "0", "0-1", "0x10", "01-02-03", "", "abc"] {
            assert_eq!(without_leading_zeros(none), None, "{none}");
        }
    }

    #[test]
    fn words_count_characters_not_bytes() {
        assert!(word("é", 1, 1, |_| true));
        assert!(!word("", 1, 1, |_| true));
        assert!(!word("ab", 1, 1, |_| true));
        assert!(!word("a_", 1, 2, |c| c.is_ascii_lowercase()));
    }
}
