//! Escaping for each output format, one small function per format.
//!
//! Templates never paste spec text raw: they call one of these through a
//! handlebars helper of the same name. Text that reaches a format with no
//! safe quoting (iptables comments, sysctl keys, unit names) is restricted
//! by validation instead and never goes through here.

/// A POSIX shell word: single quotes, with each `'` written as `'\''`.
/// Nothing inside single quotes is expanded, so `$(…)`, backticks and `;`
/// stay text.
pub fn sh(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A YAML double-quoted scalar. Backslash and quote are escaped, and so is
/// every character outside printable ASCII that YAML could read otherwise.
pub fn yaml(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    yaml_into(&mut out, s);
    out
}

/// [`yaml`], appended to `out`.
pub fn yaml_into(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_ascii() => out.push(c),
            c if (c as u32) <= 0xffff => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
}

/// An HCL quoted string, safe from HCL and from Packer.
///
/// HCL interpolates `${…}` and `%{…}`; doubling the sigil (`$${`, `%%{`)
/// makes them literal. Packer then runs some fields (AMI description,
/// tags) through Go templates, so `{{` is written as the template action
/// `{{"{{"}}`, which prints `{{`.
pub fn hcl(s: &str) -> String {
    let go_safe = s.replace("{{", "{{\"{{\"}}");
    let mut out = String::with_capacity(go_safe.len() + 2);
    out.push('"');
    let mut chars = go_safe.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '$' | '%' if chars.peek() == Some(&'{') => {
                out.push(c);
                out.push(c);
            }
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The body of a YAML literal block scalar (`|`), each line indented by
/// `indent` spaces, or `None` when a literal block could not carry the
/// text byte for byte (no final newline, more than one, carriage returns,
/// tabs or control characters, trailing spaces, or a first line that starts
/// with a space, which would change the detected indentation).
pub fn yaml_literal_body(text: &str, indent: usize) -> Option<String> {
    let body = text.strip_suffix('\n')?;
    let safe = !body.ends_with('\n')
        && !body.starts_with(' ')
        && !body.is_empty()
        && !body.ends_with(' ')
        && !body.contains(" \n")
        && no_control_characters(body.as_bytes());
    if !safe {
        return None;
    }
    let pad = " ".repeat(indent);
    let mut out = String::with_capacity(body.len() + body.len() / 20 * indent);
    for line in body.split('\n') {
        if !line.is_empty() {
            out.push_str(&pad);
            out.push_str(line);
        }
        out.push('\n');
    }
    Some(out)
}

/// Whether `b` holds no control character other than the newline: none
/// in ASCII (below 0x20, or 0x7f) and no C1 control (U+0080 to U+009F,
/// UTF-8 0xc2 0x80-0x9f). Most files are plain text: a branch-free pass
/// over blocks of bytes (which the compiler vectorizes) finds nothing to
/// look at, and only a block with a byte worth a look is read byte by byte.
fn no_control_characters(b: &[u8]) -> bool {
    const BLOCK: usize = 64;
    let worth_a_look = |c: u8| ((c < 0x20) & (c != b'\n')) | (c == 0x7f) | (c == 0xc2);
    let exact = |i: usize| match b[i] {
        b'\n' => true,
        0..0x20 | 0x7f => false,
        0xc2 => !matches!(b.get(i + 1), Some(0x80..=0x9f)),
        _ => true,
    };
    b.chunks(BLOCK).enumerate().all(|(n, block)| {
        !block.iter().fold(false, |seen, &c| seen | worth_a_look(c))
            || (n * BLOCK..n * BLOCK + block.len()).all(exact)
    })
}

/// A POSIX extended regular expression (grep -E, sed -E) that matches
/// just `text`. natbake's file names and install paths hold letters,
/// digits, `/`, `.`, `-` and `_`; anything else special is escaped all the
/// same, `#` too, which sed commands here use as their delimiter.
pub fn ere_literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if r".[]()*+?{}|^$\#".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Standard base64 (RFC 4648) with padding, as cloud-init's `b64`
/// encoding and EC2's user data (`LaunchTemplateData.UserData`) take it.
pub fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    /// The pass over blocks decides as the byte-by-byte definition does,
    /// wherever in a long text the byte that matters falls.
    #[test]
    fn literal_blocks_found_by_blocks_as_byte_by_byte() {
        fn by_bytes(body: &[u8]) -> bool {
            body.iter().enumerate().all(|(i, &c)| match c {
                b'\n' => i == 0 || body[i - 1] != b' ',
                0..0x20 | 0x7f => false,
                0xc2 => !matches!(body.get(i + 1), Some(0x80..=0x9f)),
                _ => true,
            })
        }
        let line = "iptables -t nat -A PREROUTING -p tcp --dport 20000 -j DNAT\n";
        let base = line.repeat(5);
        let odd = [
            "\t", "\r", "\u{7f}", "\u{85}", "\u{9f}", "\u{a0}", "é", "\u{100}", " \n", "\n\n",
            "\u{1b}",
        ];
        let mut tried = 0;
        for at in 0..base.len() {
            if !base.is_char_boundary(at) {
                continue;
            }
            for o in odd {
                let text = format!("x{}{o}{}", &base[..at], &base[at..]);
                let body = text.strip_suffix('\n').unwrap();
                let by_bytes = by_bytes(body.as_bytes()) && !body.ends_with('\n');
                assert_eq!(
                    yaml_literal_body(&text, 2).is_some(),
                    by_bytes,
                    "{o:?} at {at}"
                );
                tried += 1;
            }
        }
        assert!(tried > 2000);
    }

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (plain, coded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), coded);
        }
    }

    use super::*;

    #[test]
    fn shell_words_stay_words() {
        assert_eq!(sh("plain"), "'plain'");
        assert_eq!(
            sh("it's $(reboot) `id`; rm -rf /"),
            r"'it'\''s $(reboot) `id`; rm -rf /'"
        );
    }

    #[test]
    fn yaml_strings_escape_quotes_and_unicode() {
        assert_eq!(yaml(r#"a "b" \ c"#), r#""a \"b\" \\ c""#);
        assert_eq!(yaml("é"), "\"\\u00e9\"");
        assert_eq!(yaml("#: {x}"), "\"#: {x}\"");
    }

    #[test]
    fn hcl_strings_defuse_interpolation_and_go_templates() {
        assert_eq!(hcl("${var.x} %{if} $5 50%"), r#""$${var.x} %%{if} $5 50%""#);
        assert_eq!(hcl("{{ .Vars }}"), r#""{{\"{{\"}} .Vars }}""#);
        assert_eq!(hcl("say \"hi\"\\"), r#""say \"hi\"\\""#);
    }

    #[test]
    fn literal_blocks_only_when_exact() {
        assert_eq!(yaml_literal_body("a\n\nb\n", 2).unwrap(), "  a\n\n  b\n");
        assert_eq!(yaml_literal_body("a\n  b\n", 2).unwrap(), "  a\n    b\n");
        assert_eq!(yaml_literal_body(" a\n", 2), None);
        assert_eq!(yaml_literal_body("a", 2), None);
        assert_eq!(yaml_literal_body("a\n\n", 2), None);
        assert_eq!(yaml_literal_body("a \n", 2), None);
        assert_eq!(yaml_literal_body("a\tb\n", 2), None);
        assert_eq!(yaml_literal_body("a \nb\n", 2), None);
        assert_eq!(yaml_literal_body("a\r\nb\n", 2), None);
        assert_eq!(yaml_literal_body("a\u{7f}\n", 2), None);
        assert_eq!(yaml_literal_body("a\u{85}b\n", 2), None);
        assert_eq!(yaml_literal_body("a\u{9f}\n", 2), None);
        assert_eq!(
            yaml_literal_body("é \u{a0}ü\n\u{100}\n", 2).unwrap(),
            "  é \u{a0}ü\n  \u{100}\n"
        );
    }

    #[test]
    fn ere_literals_match_only_themselves() {
        assert_eq!(ere_literal("rules.v4"), r"rules\.v4");
        assert_eq!(
            ere_literal("/usr/local/sbin/configure-pat.sh"),
            r"/usr/local/sbin/configure-pat\.sh"
        );
        assert_eq!(
            ere_literal("a+b(c)#[d]|$^*?{}"),
            r"a\+b\(c\)\#\[d\]\|\$\^\*\?\{\}"
        );
    }
}
