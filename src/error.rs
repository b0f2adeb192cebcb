//! Errors and exit codes.
//!
//! Spec problems are typed ([`SpecError`]) and carry the file, line, column
//! and YAML path of every problem found, so that all of them can be reported
//! together. Everything else is an `anyhow` error with context naming the
//! file it concerns.

use std::borrow::Cow;
use std::fmt;
use std::path::{Path, PathBuf};

/// Exit code for success.
pub const EXIT_OK: u8 = 0;
/// Exit code for any failure that is not one of the others (I/O, templates, tools).
pub const EXIT_FAILURE: u8 = 1;
/// Exit code for a command line that could not be parsed.
pub const EXIT_USAGE: u8 = 2;
/// Exit code for a site spec that failed parsing or validation.
pub const EXIT_INVALID_SPEC: u8 = 3;

/// One problem in a spec, pinned to where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// 1-based line; 0 for a problem of the whole file.
    pub line: u64,
    /// 1-based column; 0 when the parser could not tell.
    pub column: u64,
    /// YAML path of the offending field, such as `forwards[1].to`; empty for the document.
    pub path: String,
    /// What is wrong and, where it can be said, what to write instead.
    pub message: String,
}

/// A site spec that cannot be rendered.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The file could not be read.
    #[error("cannot read site spec `{}`", printable_path(file))]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file was read but parsing or validation found problems.
    #[error("{}", Invalid { file, diagnostics })]
    Invalid {
        file: PathBuf,
        diagnostics: Vec<Diagnostic>,
    },
    /// Several specs of one command failed; each is listed with its causes.
    #[error(
        "{} of {total} site specs {}; nothing was written{}",
        errors.len(),
        if all_invalid(errors) { "are invalid" } else { "failed" },
        list(errors)
    )]
    Several {
        errors: Vec<SpecError>,
        total: usize,
    },
    /// Two specs of one build name the same site.
    #[error(
        "site `{site}` is defined twice: in `{}` and in `{}`; every site needs its own name",
        printable_path(first),
        printable_path(second)
    )]
    DuplicateSite {
        site: String,
        first: PathBuf,
        second: PathBuf,
    },
}

/// Each error, then its causes: an unreadable file keeps the reason the
/// system gave.
fn list(errors: &[SpecError]) -> String {
    let mut out = String::new();
    for e in errors {
        out.push_str(&format!("\n{e}"));
        let mut cause = std::error::Error::source(e);
        while let Some(c) = cause {
            out.push_str(&format!("\n  caused by: {c}"));
            cause = c.source();
        }
    }
    out
}

/// Whether every failure is a problem of the spec's content, so that the
/// whole may be called invalid (exit 3) rather than failed (exit 1).
fn all_invalid(errors: &[SpecError]) -> bool {
    errors.iter().all(SpecError::is_invalid)
}

/// Text from a spec or a file name as a message may show it: control
/// characters (a newline in a sysctl key, an escape sequence in a file
/// name), the invisible characters that reorder or split lines, and `\`
/// itself are written as Rust escapes (`\n`, `\u{1b}`, `\\`), so each
/// message stays on its line and shows what is really there.
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if needs_escape(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// [`printable`] for a path.
pub fn printable_path(path: &Path) -> String {
    printable(&path.to_string_lossy()).into_owned()
}

fn needs_escape(c: char) -> bool {
    c.is_control()
        || c == '\\'
        // Line and paragraph separators, and the bidirectional controls
        // that can make a message read differently from its bytes.
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Displays an invalid spec as one line per problem: `FILE:LINE:COL: PATH: MESSAGE`.
struct Invalid<'a> {
    file: &'a PathBuf,
    diagnostics: &'a [Diagnostic],
}

impl fmt::Display for Invalid<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.diagnostics.len();
        let file = printable_path(self.file);
        write!(
            f,
            "`{file}` is not a valid site spec ({n} problem{})",
            if n == 1 { "" } else { "s" }
        )?;
        // Paths and messages quote the spec's own text, which may hold any
        // character; escaping keeps every problem on its own line.
        for d in self.diagnostics {
            if d.line == 0 {
                // A problem of the whole file, such as its size.
                write!(f, "\n  {file}: ")?;
            } else {
                write!(f, "\n  {file}:{}:{}: ", d.line, d.column)?;
            }
            if !d.path.is_empty() {
                write!(f, "{}: ", printable(&d.path))?;
            }
            f.write_str(&printable(&d.message))?;
        }
        Ok(())
    }
}

impl SpecError {
    /// The problems found, for callers that want them one by one.
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            SpecError::Invalid { diagnostics, .. } => diagnostics,
            _ => &[],
        }
    }

    /// Whether this is a problem of the spec's content (exit 3), as
    /// opposed to a file that could not be read (exit 1).
    fn is_invalid(&self) -> bool {
        match self {
            SpecError::Read { .. } => false,
            SpecError::Invalid { .. } | SpecError::DuplicateSite { .. } => true,
            SpecError::Several { errors, .. } => all_invalid(errors),
        }
    }
}

/// Picks the exit code for an error chain: invalid specs (not unreadable
/// ones; with several, only when every one of them is invalid) give
/// [`EXIT_INVALID_SPEC`], anything else [`EXIT_FAILURE`].
pub fn exit_code_for(err: &anyhow::Error) -> u8 {
    let invalid = err.chain().any(|e| {
        e.downcast_ref::<SpecError>()
            .is_some_and(SpecError::is_invalid)
    });
    if invalid {
        EXIT_INVALID_SPEC
    } else {
        EXIT_FAILURE
    }
}
