//! The instance's scripts without their explanatory comment lines.
//!
//! The user data carries every script the instance runs, and EC2 takes at
//! most 16 KiB of it: comment lines were a third of those bytes. So the
//! scripts natbake installs keep the first paragraph of their header (what
//! the file is, where its comments are) and lose every other line that is
//! only a comment, the rest of the header and `# shellcheck` directives
//! included, and the indentation and blank lines of code (not of text
//! inside quotes) (shellcheck reads the sources, which `instance/` keeps whole,
//! and `natbake templates dump` prints). The AMI and the user data install
//! the same bytes, which SHA256SUMS lists.
//!
//! A line is only dropped where bash would read it as a comment: outside
//! any quotes, so that a line of a multi-line string that starts with `#`
//! stays. [`strip_comments`] follows bash's quoting (single, double,
//! `$'…'`, command substitution, backslash) line by line to know that.
//! Here-documents, whose bodies are data, are not followed: a script with
//! one is left whole.

/// Where the lexer is at the end of a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quote {
    /// Inside `'…'` (or `$'…'` when the flag is set: backslash escapes).
    Single { ansi: bool },
    /// Inside `"…"`.
    Double,
    /// Inside `$(…)`, with its open parentheses counted; its text is read
    /// as a script of its own.
    Command { depth: u32 },
}

/// `script` without its full-line comments after the header's first
/// paragraph: see the module's documentation. The first line (`#!`), the
/// comment lines that follow it up to the first bare `#`, and `#
/// shellcheck` directives are kept.
pub fn strip_comments(script: &str) -> String {
    if has_heredoc(script) {
        return script.to_string();
    }
    let mut out = String::with_capacity(script.len());
    let mut stack: Vec<Quote> = Vec::new();
    let mut in_header = true;
    for (n, line) in script.split_inclusive('\n').enumerate() {
        let trimmed = line.trim_start();
        let comment = trimmed.starts_with('#');
        let code_context = stack.iter().all(|q| matches!(q, Quote::Command { .. }));
        if in_header && trimmed.trim_end() == "#" {
            in_header = false;
        }
        if n == 0 || (in_header && comment) {
            out.push_str(line);
        } else {
            in_header = false;
            // Code loses its indentation and blank lines too; text inside
            // quotes (an awk program, a message) is left as it is.
            let code = line.trim_start_matches([' ', '\t']);
            if !code_context {
                out.push_str(line);
            } else if !comment && code != "\n" {
                out.push_str(code);
            }
        }
        if !(comment && code_context) {
            scan(line, &mut stack);
        }
    }
    out
}

/// Whether `script` has a here-document (`<<WORD`, `<<-WORD`, `<<'WORD'`),
/// as opposed to a here-string (`<<<`) or an arithmetic shift (`<< 8`,
/// `<< (`), which natbake's scripts use.
fn has_heredoc(script: &str) -> bool {
    let b = script.as_bytes();
    (0..b.len().saturating_sub(2)).any(|i| {
        b[i] == b'<' && b[i + 1] == b'<' && (i == 0 || b[i - 1] != b'<') && b[i + 2] != b'<' && {
            let rest = &script[i + 2..];
            let rest = rest.strip_prefix('-').unwrap_or(rest);
            rest.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_' || c == '\'' || c == '"')
        }
    })
}

/// Moves the quoting state over one line. Bytes, not chars: every byte
/// that matters to quoting is ASCII, which UTF-8 never uses inside a
/// multi-byte character.
fn scan(line: &str, stack: &mut Vec<Quote>) {
    let b = line.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        match stack.last().copied() {
            Some(Quote::Single { ansi }) => {
                if ansi && c == b'\\' {
                    i += 1;
                } else if c == b'\'' {
                    stack.pop();
                }
            }
            Some(Quote::Double) => match c {
                b'\\' => i += 1,
                b'"' => {
                    stack.pop();
                }
                b'$' if next == Some(b'(') => {
                    stack.push(Quote::Command { depth: 1 });
                    i += 1;
                }
                _ => {}
            },
            _ => {
                // Code: the script itself, or a command substitution. Only
                // a `#` needs to know where the word starts: that is asked
                // for no other byte.
                let at_word_start =
                    || i == 0 || b[i - 1].is_ascii_whitespace() || b";&|(".contains(&b[i - 1]);
                match c {
                    b'#' if at_word_start() => return,
                    b'\\' => i += 1,
                    b'\'' => stack.push(Quote::Single { ansi: false }),
                    b'$' if next == Some(b'\'') => {
                        stack.push(Quote::Single { ansi: true });
                        i += 1;
                    }
                    b'"' => stack.push(Quote::Double),
                    b'$' if next == Some(b'(') => {
                        stack.push(Quote::Command { depth: 1 });
                        i += 1;
                    }
                    b'(' => {
                        if let Some(Quote::Command { depth }) = stack.last_mut() {
                            *depth += 1;
                        }
                    }
                    b')' => {
                        if let Some(Quote::Command { depth }) = stack.last_mut() {
                            *depth -= 1;
                            if *depth == 0 {
                                stack.pop();
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::strip_comments;

    #[test]
    fn the_header_stays_other_comment_lines_go() {
        let script = "#!/bin/bash\n# header\n# more header\n#\n# what it does, at length\n# shellcheck disable=SC1112\n\nset -u\n# why this\n  # indented why\necho hi # trailing stays\n# shellcheck disable=SC2034\nX=1\n";
        assert_eq!(
            strip_comments(script),
            "#!/bin/bash\n# header\n# more header\nset -u\necho hi # trailing stays\nX=1\n"
        );
    }

    #[test]
    fn lines_inside_strings_stay() {
        for script in [
            "#!/bin/bash\nx\necho 'a\n# in single quotes\nb'\n",
            "#!/bin/bash\nx\necho \"a\n# in double quotes\nb\"\n",
            "#!/bin/bash\nx\necho $'a\\'\n# in ansi quotes\nb'\n",
            "#!/bin/bash\nx\nawk '\n  # awk comment, inside quotes\n  { print }'\n",
            "#!/bin/bash\nx\necho \"$(printf '%s' \")\"\n# in double quotes after a substitution\n\"\n",
        ] {
            assert_eq!(strip_comments(script), script, "{script}");
        }
    }

    #[test]
    fn comments_inside_command_substitutions_are_comments() {
        let script = "#!/bin/bash\nx\ny=$(\n  # a comment in the substitution\n  echo \"$(date)\" )\n# after\nz\n";
        assert_eq!(
            strip_comments(script),
            "#!/bin/bash\nx\ny=$(\necho \"$(date)\" )\nz\n"
        );
    }

    #[test]
    fn quotes_in_trailing_comments_and_escapes_do_not_open_strings() {
        let script = "#!/bin/bash\nx\necho it\\'s # don't\n# gone\necho \"a \\\" b\"\n# gone too\n";
        assert_eq!(
            strip_comments(script),
            "#!/bin/bash\nx\necho it\\'s # don't\necho \"a \\\" b\"\n"
        );
    }

    #[test]
    fn a_script_with_a_heredoc_is_left_whole() {
        let script = "#!/bin/bash\nx\ncat <<EOF\n# data\nEOF\n# comment\n";
        assert_eq!(strip_comments(script), script);
        // Here-strings and shifts are not here-documents.
        let script = "#!/bin/bash\nx\nread a <<<\"$b\"\necho $(( 1 << 8 ))\n# comment\n";
        assert_eq!(
            strip_comments(script),
            "#!/bin/bash\nx\nread a <<<\"$b\"\necho $(( 1 << 8 ))\n"
        );
    }

    /// Every script natbake installs means to bash what its source says:
    /// `shfmt -mn` (a bash parser that prints the program without
    /// comments) gives the same for both.
    #[test]
    fn installed_scripts_parse_as_their_sources_do() {
        use crate::render::instance::{SCRIPTS, installed};
        use std::io::Write;
        use std::process::{Command, Stdio};
        let minified = |text: &str| {
            let mut child = Command::new("shfmt")
                .args(["-mn", "-ln", "bash"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("shfmt runs (scripts/test.sh installs it)");
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success(), "shfmt refused a script");
            String::from_utf8(out.stdout).unwrap()
        };
        assert!(SCRIPTS.len() >= 5);
        for s in SCRIPTS {
            let text = std::str::from_utf8(installed(s.artifact)).unwrap();
            assert!(
                text.len() < s.source.len(),
                "{}: nothing stripped",
                s.artifact
            );
            assert_eq!(minified(text), minified(s.source), "{}", s.artifact);
        }
    }
}
