//! Errors and exit codes.
//!
//! Spec problems are typed ([`SpecError`]) and carry the file, line, column
//! and YAML path of every problem found, so that all of them can be reported
//! together. Everything else is an `anyhow` error with context naming the
//! file it concerns.

use std::fmt;
use std::path::PathBuf;

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
    #[error("cannot read site spec `{}`", file.display())]
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
    /// Several specs of one command failed; each is listed.
    #[error("{} of {total} site specs are invalid; nothing was written{}", errors.len(), list(errors))]
    Several {
        errors: Vec<SpecError>,
        total: usize,
    },
    /// Two specs of one build name the same site.
    #[error(
        "site `{site}` is defined twice: in `{}` and in `{}`; every site needs its own name",
        first.display(),
        second.display()
    )]
    DuplicateSite {
        site: String,
        first: PathBuf,
        second: PathBuf,
    },
}

fn list(errors: &[SpecError]) -> String {
    errors.iter().map(|e| format!("\n{e}")).collect()
}

/// Displays an invalid spec as one line per problem: `FILE:LINE:COL: PATH: MESSAGE`.
struct Invalid<'a> {
    file: &'a PathBuf,
    diagnostics: &'a [Diagnostic],
}

impl fmt::Display for Invalid<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.diagnostics.len();
        write!(
            f,
            "`{}` is not a valid site spec ({n} problem{})",
            self.file.display(),
            if n == 1 { "" } else { "s" }
        )?;
        for d in self.diagnostics {
            if d.line == 0 {
                // A problem of the whole file, such as its size.
                write!(f, "\n  {}: ", self.file.display())?;
            } else {
                write!(f, "\n  {}:{}:{}: ", self.file.display(), d.line, d.column)?;
            }
            if !d.path.is_empty() {
                write!(f, "{}: ", d.path)?;
            }
            f.write_str(&d.message)?;
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
}

/// Picks the exit code for an error chain: an invalid spec (not an unreadable one) anywhere in it gives
/// [`EXIT_INVALID_SPEC`], anything else [`EXIT_FAILURE`].
pub fn exit_code_for(err: &anyhow::Error) -> u8 {
    let invalid = err.chain().any(|e| {
        matches!(
            e.downcast_ref::<SpecError>(),
            Some(
                SpecError::Invalid { .. }
                    | SpecError::DuplicateSite { .. }
                    | SpecError::Several { .. }
            )
        )
    });
    if invalid {
        EXIT_INVALID_SPEC
    } else {
        EXIT_FAILURE
    }
}
