//! From spec bytes to a [`RawSpec`], and the YAML paths problems are
//! reported at.
//!
//! Parsing stops at the first problem of shape (bad YAML, an unknown key, a
//! wrong type), since nothing after it can be trusted. The parser's own
//! messages are terse; this module turns them into natbake's, with the
//! line, column and path of the problem.

use crate::error::Diagnostic;
use crate::spec::RawSpec;
use std::fmt;

/// Largest spec file accepted. A spec with 10,000 forwards is about 1.5 MB.
pub const MAX_SPEC_BYTES: u64 = 16 * 1024 * 1024;

/// Parses spec bytes within the size and nesting limits.
pub fn parse_spec(bytes: &[u8]) -> Result<RawSpec, Diagnostic> {
    if bytes.len() as u64 > MAX_SPEC_BYTES {
        return Err(Diagnostic {
            line: 0,
            column: 0,
            path: String::new(),
            message: format!(
                "the file is larger than {} MiB; a site spec is a few kilobytes",
                MAX_SPEC_BYTES / 1024 / 1024
            ),
        });
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let (line, column) = line_col(bytes, e.valid_up_to());
        Diagnostic {
            line,
            column,
            path: String::new(),
            message: "the file is not valid UTF-8".into(),
        }
    })?;
    parse_text(text)
}

/// 1-based line and column of a byte offset; the column counts bytes.
fn line_col(bytes: &[u8], offset: usize) -> (u64, u64) {
    let before = &bytes[..offset];
    let line = before.iter().filter(|&&b| b == b'\n').count() as u64 + 1;
    let column = (offset
        - before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |p| p + 1)) as u64
        + 1;
    (line, column)
}

/// Parses the YAML within [`options`]' limits.
fn parse_text(text: &str) -> Result<RawSpec, Diagnostic> {
    // Tracking the YAML path doubles the cost of a parse; it is only needed
    // to describe a failure, so a failed parse runs again with it.
    serde_saphyr::from_str_with_options(text, options()).or_else(|_| {
        // serde_path_to_error knows the path but must hand back
        // serde-saphyr's error type from the closure; the path waits
        // outside until then.
        let mut path = None;
        serde_saphyr::with_deserializer_from_str_with_options(text, options(), |de| {
            serde_path_to_error::deserialize(de).map_err(|e| {
                path = Some(e.path().to_string());
                e.into_inner()
            })
        })
        .map_err(|e| diagnostic_of(path.unwrap_or_default(), &e))
    })
}

/// Limits that keep hostile input (alias bombs, deep nesting, huge
/// documents) cheap to refuse.
fn options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        with_snippet: false,
        strict_booleans: true,
        // `port: 080` stays the text `080`, so that validation can say what
        // is wrong with it instead of the parser reading it as a decimal.
        leading_zero_numbers_as_strings: true,
        budget: serde_saphyr::budget! {
            max_events: 2_000_000,
            max_aliases: 1_000,
            max_anchors: 1_000,
            max_depth: 32,
            max_documents: 1,
            max_nodes: 1_000_000,
            max_total_scalar_bytes: MAX_SPEC_BYTES as usize,
            max_merge_keys: 100,
        },
        alias_limits: serde_saphyr::alias_limits! {
            max_total_replayed_events: 100_000,
            max_replay_stack_depth: 16,
        },
    }
}

fn diagnostic_of(path: String, err: &serde_saphyr::Error) -> Diagnostic {
    let (line, column) = err.location().map_or((0, 0), |l| (l.line(), l.column()));
    let mut message = err.without_snippet().to_string();
    // The location is reported in its own fields.
    if let Some(cut) = message.rfind(" at line ") {
        message.truncate(cut);
    }
    let message = explain(&message, path.is_empty() || path == "." || path == "?");
    // serde_path_to_error shows the root as "." and Spanned adds a `.value` step.
    let path = path.replace(".value", "");
    let path = if path == "." || path == "?" {
        String::new()
    } else {
        path
    };
    Diagnostic {
        line,
        column,
        path,
        message,
    }
}

/// Adds the advice a person needs to the parser's terse messages.
fn explain(message: &str, at_root: bool) -> String {
    if let Some(dup) = message.strip_suffix(", set DuplicateKeyPolicy in Options if acceptable") {
        format!("{dup}; each key may appear once")
    } else if message == "unexpected end of input" && at_root {
        "the file holds no spec; a site spec needs at least `version: 1`, `site` and `vpc_cidrs`"
            .into()
    } else if message == "expected mapping start" && at_root {
        "a site spec is a mapping of keys such as `version: 1`, not a list or a single value".into()
    } else if message == "expected sequence start" {
        "expected a list, such as `[10.0.0.0/16]` or lines starting with `- `; an empty value is not a list".into()
    } else if message == "expected mapping start" {
        "expected a mapping of `key: value` lines".into()
    } else if message.starts_with("unknown field") {
        format!(
            "{message}; check the spelling (unknown keys are refused so that typos cannot hide)"
        )
    } else if message.contains("budget")
        || message.contains("limit")
        || message.contains("exceeded")
    {
        format!(
            "{message}; the spec is too large or too deeply nested (anchors and aliases are limited)"
        )
    } else {
        message.to_owned()
    }
}

/// Where a value sits in the spec, written as messages show it:
/// `forwards[1].to`, `sysctl.net.core.somaxconn`, `ami.tags.team`.
///
/// Built step by step, so that the spelling is the same for every section
/// and the serde parser's paths (which read the same) agree with it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct YamlPath(String);

impl YamlPath {
    /// The top of the document.
    pub fn root() -> YamlPath {
        YamlPath::default()
    }

    /// A key of this mapping. Keys are written as they are, dots and all,
    /// as the spec's own sysctl keys are.
    pub fn key(&self, key: &str) -> YamlPath {
        if self.0.is_empty() {
            YamlPath(key.to_owned())
        } else {
            YamlPath(format!("{}.{key}", self.0))
        }
    }

    /// An item of this list, counted from 0.
    pub fn index(&self, i: usize) -> YamlPath {
        YamlPath(format!("{}[{i}]", self.0))
    }
}

impl fmt::Display for YamlPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<YamlPath> for String {
    fn from(p: YamlPath) -> String {
        p.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_read_as_messages_show_them() {
        let root = YamlPath::root();
        assert_eq!(root.to_string(), "");
        assert_eq!(root.key("site").to_string(), "site");
        assert_eq!(
            root.key("forwards").index(1).key("to").to_string(),
            "forwards[1].to"
        );
        assert_eq!(
            root.key("forwards")
                .index(0)
                .key("from")
                .index(1000)
                .to_string(),
            "forwards[0].from[1000]"
        );
        assert_eq!(
            root.key("sysctl").key("net.core.somaxconn").to_string(),
            "sysctl.net.core.somaxconn"
        );
        assert_eq!(
            root.key("ami").key("tags").key("team").to_string(),
            "ami.tags.team"
        );
    }

    #[test]
    fn lines_and_columns_count_from_one() {
        assert_eq!(line_col(b"abc", 0), (1, 1));
        assert_eq!(line_col(b"abc", 2), (1, 3));
        assert_eq!(line_col(b"a\nbc\nd", 4), (2, 3));
        assert_eq!(line_col(b"a\n\n", 3), (3, 1));
    }

    #[test]
    fn size_and_encoding_are_checked_before_parsing() {
        let d = parse_spec(b"version: 1\nsite: \xff\n").unwrap_err();
        assert_eq!(
            (d.line, d.column, d.message.as_str()),
            (2, 7, "the file is not valid UTF-8")
        );
        let big = vec![b' '; MAX_SPEC_BYTES as usize + 1];
        let d = parse_spec(&big).unwrap_err();
        assert_eq!((d.line, d.column), (0, 0));
        assert!(d.message.starts_with("the file is larger than 16 MiB"));
    }

    #[test]
    fn parser_messages_get_advice() {
        let d = parse_spec(b"").unwrap_err();
        assert_eq!(
            (d.path.as_str(), d.message.as_str()),
            (
                "",
                "the file holds no spec; a site spec needs at least `version: 1`, `site` and `vpc_cidrs`"
            )
        );
        let d = parse_spec(b"- 1\n").unwrap_err();
        assert!(d.message.starts_with("a site spec is a mapping"), "{d:?}");
        let d = parse_spec(b"version: 1\nsite: s\nvpc_cidrs: [10.0.0.0/16]\nami:\n  tagz: {}\n")
            .unwrap_err();
        assert_eq!((d.line, d.path.as_str()), (5, "ami.tagz"));
        assert!(
            d.message.ends_with(
                "; check the spelling (unknown keys are refused so that typos cannot hide)"
            ),
            "{d:?}"
        );
        let d = parse_spec(b"version: 1\nversion: 1\n").unwrap_err();
        assert!(d.message.ends_with("; each key may appear once"), "{d:?}");
    }
}
