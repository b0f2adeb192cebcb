//! Names, free text and choices from a fixed list.

use std::fmt;

/// Longest site name: it names the output folder, the AMI and tags, and
/// the spec reference promises this length.
pub const SITE_NAME_MAX: usize = 40;
/// Longest forward name: it is repeated in chain comments, log prefixes
/// and security group rules, and the spec reference promises this length.
pub const FORWARD_NAME_MAX: usize = 24;
/// Longest free text, in characters: a description is a note, and it is
/// repeated in several artifacts.
pub const MAX_TEXT_CHARS: usize = 200;

/// Why text is not a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameProblem {
    pub text: String,
    pub max: usize,
    /// A name close to the text that would be accepted, if there is one.
    pub suggestion: Option<String>,
}

impl fmt::Display for NameProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` is not a valid name: use a lower-case letter, then up to {} lower-case letters, digits or `-`",
            self.text,
            self.max - 1
        )?;
        if let Some(s) = &self.suggestion {
            write!(f, "; for example `{s}`")?;
        }
        Ok(())
    }
}

impl std::error::Error for NameProblem {}

/// A name that ends up in file names, chain comments, tags and log
/// prefixes, where only these characters are safe without quoting:
/// `^[a-z][a-z0-9-]{0,max-1}$`.
pub fn name(text: &str, max: usize) -> Result<String, NameProblem> {
    let ok = text.len() <= max
        && text.starts_with(|c: char| c.is_ascii_lowercase())
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        return Ok(text.to_owned());
    }
    let suggestion: String = text
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .skip_while(|c| !c.is_ascii_lowercase())
        .take(max)
        .collect();
    Err(NameProblem {
        text: text.to_owned(),
        max,
        suggestion: (!suggestion.is_empty() && suggestion != text).then_some(suggestion),
    })
}

/// A site's [`name`].
pub fn site_name(text: &str) -> Result<String, NameProblem> {
    name(text, SITE_NAME_MAX)
}

/// A forward's [`name`].
pub fn forward_name(text: &str) -> Result<String, NameProblem> {
    name(text, FORWARD_NAME_MAX)
}

/// Why text cannot be carried into the artifacts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextProblem {
    #[error("text is {count} characters long; the limit is {MAX_TEXT_CHARS}")]
    TooLong { count: usize },
    #[error(
        "text contains U+{:04X}, a Unicode noncharacter that YAML cannot carry (cloud-init would ignore the whole user data); remove it",
        *.0 as u32
    )]
    Noncharacter(char),
    #[error(
        "text contains the control or formatting character U+{:04X}; write it on one line without control characters",
        *.0 as u32
    )]
    Control(char),
}

/// Free text (a description): at most [`MAX_TEXT_CHARS`] characters, no
/// control characters, no invisible direction or line-separator
/// characters that could make an artifact read differently from what it
/// does, and nothing outside the characters YAML can carry (cloud-init
/// drops user data that has one). Every problem is returned, the length
/// first.
pub fn free_text(text: &str) -> Result<String, Vec<TextProblem>> {
    let mut problems = Vec::new();
    let count = text.chars().count();
    if count > MAX_TEXT_CHARS {
        problems.push(TextProblem::TooLong { count });
    }
    if let Some(c) = text.chars().find(|&c| forbidden_in_text(c)) {
        problems.push(if is_noncharacter(c) {
            TextProblem::Noncharacter(c)
        } else {
            TextProblem::Control(c)
        });
    }
    if problems.is_empty() {
        Ok(text.to_owned())
    } else {
        Err(problems)
    }
}

/// Control characters (C0, DEL and C1, NEL among them, which YAML 1.1
/// reads as a line break), direction and line-separator marks, and the
/// noncharacters, of which U+FFFE and U+FFFF are outside YAML's printable
/// set. Surrogates cannot occur in a Rust string.
fn forbidden_in_text(c: char) -> bool {
    c.is_control()
        || is_noncharacter(c)
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
}

/// The 66 code points Unicode reserves as never meaning a character:
/// U+FDD0..U+FDEF and the last two of every plane.
fn is_noncharacter(c: char) -> bool {
    let n = c as u32;
    (0xfdd0..=0xfdef).contains(&n) || n & 0xfffe == 0xfffe
}

/// Text that is none of the accepted spellings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotOneOf {
    pub text: String,
    pub names: Vec<&'static str>,
}

impl fmt::Display for NotOneOf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self.names.iter().map(|n| format!("`{n}`")).collect();
        write!(f, "`{}` is not one of {}", self.text, names.join(", "))
    }
}

impl std::error::Error for NotOneOf {}

/// The item of `all` whose `name` is `text`, spelled exactly.
pub fn choice<T: Copy>(
    text: &str,
    all: &[T],
    name: impl Fn(T) -> &'static str,
) -> Result<T, NotOneOf> {
    all.iter()
        .copied()
        .find(|&t| name(t) == text)
        .ok_or_else(|| NotOneOf {
            text: text.to_owned(),
            names: all.iter().map(|&t| name(t)).collect(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::site::Proto;

    #[test]
    fn names_are_lower_case_words_with_dashes() {
        assert_eq!(site_name("corp-prod").as_deref(), Ok("corp-prod"));
        assert_eq!(forward_name("a").as_deref(), Ok("a"));
        assert!(site_name(&"a".repeat(SITE_NAME_MAX)).is_ok());
        assert!(forward_name(&"a".repeat(FORWARD_NAME_MAX)).is_ok());
        assert!(forward_name(&"a".repeat(FORWARD_NAME_MAX + 1)).is_err());
        for bad in ["", "1st", "-a", "a_b", "Corp", "a b", "é"] {
            assert!(site_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_refused_name_comes_with_a_suggestion_when_one_exists() {
        assert_eq!(
            site_name("Corp_Prod").unwrap_err().to_string(),
            "`Corp_Prod` is not a valid name: use a lower-case letter, then up to 39 lower-case letters, digits or `-`; for example `corp-prod`"
        );
        assert_eq!(
            forward_name(&"x".repeat(30)).unwrap_err().suggestion,
            Some("x".repeat(FORWARD_NAME_MAX))
        );
        assert_eq!(site_name("123").unwrap_err().suggestion, None);
        assert_eq!(site_name("").unwrap_err().suggestion, None);
    }

    #[test]
    fn free_text_refuses_what_would_change_how_an_artifact_reads() {
        assert_eq!(
            free_text("Oracle, from HQ").as_deref(),
            Ok("Oracle, from HQ")
        );
        assert!(free_text(&"é".repeat(MAX_TEXT_CHARS)).is_ok());
        assert_eq!(
            free_text(&"é".repeat(MAX_TEXT_CHARS + 1)),
            Err(vec![TextProblem::TooLong {
                count: MAX_TEXT_CHARS + 1
            }])
        );
        for c in ['\n', '\u{85}', '\u{7f}', '\u{202e}', '\u{2028}', '\u{feff}'] {
            assert_eq!(
                free_text(&format!("a{c}b")),
                Err(vec![TextProblem::Control(c)]),
                "{c:?}"
            );
        }
        for c in ['\u{fffe}', '\u{ffff}', '\u{fdd0}', '\u{10ffff}'] {
            assert_eq!(
                free_text(&format!("a{c}b")),
                Err(vec![TextProblem::Noncharacter(c)]),
                "{c:?}"
            );
        }
        for c in ['\u{fffd}', '\u{e000}', '\u{a0}', '\u{1f600}'] {
            assert!(free_text(&format!("a{c}b")).is_ok(), "{c:?}");
        }
        let both = free_text(&format!("{}\t", "a".repeat(MAX_TEXT_CHARS))).unwrap_err();
        assert_eq!(both.len(), 2);
        assert_eq!(
            both[1].to_string(),
            "text contains the control or formatting character U+0009; write it on one line without control characters"
        );
    }

    #[test]
    fn choices_are_spelled_exactly() {
        let all = [Proto::Tcp, Proto::Udp];
        assert_eq!(choice("udp", &all, Proto::name), Ok(Proto::Udp));
        assert_eq!(
            choice("TCP", &all, Proto::name).unwrap_err().to_string(),
            "`TCP` is not one of `tcp`, `udp`"
        );
    }
}
