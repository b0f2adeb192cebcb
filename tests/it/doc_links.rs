//! The docs link to each other: the README is a map into `docs/` and
//! `CONTRIBUTING.md`. Every relative link in them, and in the Packer
//! guide, must point to a file that exists and, with `#anchor`, to a
//! heading that file has, by GitHub's rules for heading anchors.

use crate::fixtures::repo;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The files whose links are checked.
fn docs() -> Vec<PathBuf> {
    let root = repo();
    let mut files: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    files.sort();
    for f in ["README.md", "CONTRIBUTING.md", "packer/README.md"] {
        files.push(root.join(f));
    }
    files
}

/// The lines of a markdown file outside fenced code blocks.
fn prose(text: &str) -> Vec<&str> {
    let mut fenced = false;
    text.lines()
        .filter(|l| {
            if l.trim_start().starts_with("```") {
                fenced = !fenced;
                return false;
            }
            !fenced
        })
        .collect()
}

/// A line without its inline code spans, where `](` is not a link.
fn without_code(line: &str) -> String {
    line.split('`').step_by(2).collect::<Vec<_>>().join(" ")
}

/// GitHub's anchor for a heading: lowercase, spaces to `-`, every
/// character but letters, digits, `-` and `_` dropped; a repeated anchor
/// gets `-1`, `-2`, ….
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for line in prose(text) {
        let Some(title) = line
            .strip_prefix('#')
            .map(|t| t.trim_start_matches('#'))
            .and_then(|t| t.strip_prefix(' '))
        else {
            continue;
        };
        let base: String = title
            .trim()
            .to_lowercase()
            .chars()
            .filter_map(|c| match c {
                ' ' => Some('-'),
                c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                _ => None,
            })
            .collect();
        let mut anchor = base.clone();
        let mut n = 0;
        while seen.contains(&anchor) {
            n += 1;
            anchor = format!("{base}-{n}");
        }
        seen.insert(anchor);
    }
    seen
}

/// The relative link targets of a markdown file: `[text](target)`.
fn links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in prose(text) {
        let line = without_code(line);
        let mut rest = line.as_str();
        while let Some(i) = rest.find("](") {
            rest = &rest[i + 2..];
            let Some(end) = rest.find(')') else { break };
            let target = &rest[..end];
            if !target.contains("://") && !target.starts_with("mailto:") {
                out.push(target.to_owned());
            }
            rest = &rest[end..];
        }
    }
    out
}

/// What is wrong with one link of `from`, if anything.
fn broken(from: &Path, target: &str) -> Option<String> {
    let (path, anchor) = match target.split_once('#') {
        Some((p, a)) => (p, Some(a)),
        None => (target, None),
    };
    let file = if path.is_empty() {
        from.to_owned()
    } else {
        from.parent().unwrap().join(path)
    };
    if !file.exists() {
        return Some(format!("{} does not exist", file.display()));
    }
    let anchor = anchor?;
    let text = std::fs::read_to_string(&file).ok()?;
    (!anchors(&text).contains(anchor))
        .then(|| format!("{} has no heading for #{anchor}", file.display()))
}

/// Every relative link and anchor in the README, `CONTRIBUTING.md`,
/// `docs/*.md` and the Packer guide resolves.
#[test]
fn every_relative_link_in_the_docs_resolves() {
    let mut problems = Vec::new();
    let mut checked = 0;
    for doc in docs() {
        let text = std::fs::read_to_string(&doc).unwrap();
        for target in links(&text) {
            checked += 1;
            if let Some(p) = broken(&doc, &target) {
                let name = doc.strip_prefix(repo()).unwrap().display().to_string();
                problems.push(format!("{name}: ({target}): {p}"));
            }
        }
    }
    assert!(checked >= 10, "the README links into docs/: {checked}");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The README is a map: it links to every file of the reference and to
/// the contributor's guide.
#[test]
fn the_readme_links_to_every_reference_file() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let targets: BTreeSet<String> = links(&readme)
        .into_iter()
        .map(|t| t.split('#').next().unwrap().to_owned())
        .collect();
    let mut wanted: Vec<String> = docs()
        .iter()
        .filter_map(|p| p.strip_prefix(repo().join("docs")).ok())
        .map(|p| format!("docs/{}", p.display()))
        .collect();
    wanted.push("CONTRIBUTING.md".into());
    let missing: Vec<&String> = wanted.iter().filter(|w| !targets.contains(*w)).collect();
    assert!(missing.is_empty(), "README.md does not link to {missing:?}");
}

/// The anchor rules match GitHub's on headings these docs have.
#[test]
fn anchors_follow_githubs_rules() {
    let text = "# The stack: one CloudFormation template\n\
                ## `natbake plan`: what each shape costs\n\
                ```\n# not a heading\n```\n\
                ## Tests\n## Tests\n### snake_case and a-hyphen\n";
    let got: Vec<String> = anchors(text).into_iter().collect();
    assert_eq!(
        got,
        [
            "natbake-plan-what-each-shape-costs",
            "snake_case-and-a-hyphen",
            "tests",
            "tests-1",
            "the-stack-one-cloudformation-template",
        ]
    );
    assert_eq!(
        links("see [a](docs/a.md#b) and `[c](d)`, [e](https://x.example/)"),
        ["docs/a.md#b"]
    );
}
