//! templates/README.md documents the view model that templates read: every
//! field the view serializes is listed there, and every field listed there
//! exists. The fields are read from the serialized view of every valid
//! spec at run time, so a field added to the view fails this test until it
//! is documented.

use crate::fixtures::{repo, valid_specs};
use natbake::render::{self, Templates, view::View};
use serde_json::Value;
use std::collections::BTreeSet;

/// Every field path of `value`: `a`, `a.b`, and `a[].b` for the fields of
/// the elements of a list.
fn field_paths(prefix: &str, value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(fields) => {
            for (name, inner) in fields {
                let path = if prefix.is_empty() {
                    name.clone()
                } else {
                    format!("{prefix}.{name}")
                };
                out.insert(path.clone());
                field_paths(&path, inner, out);
            }
        }
        Value::Array(items) => {
            for item in items {
                field_paths(&format!("{prefix}[]"), item, out);
            }
        }
        _ => {}
    }
}

/// The fields of the views of every valid spec, filled in as the user data
/// template sees them (with the installed files).
fn serialized_fields() -> BTreeSet<String> {
    let templates = Templates::load(None).unwrap();
    let mut fields = BTreeSet::new();
    for spec in valid_specs() {
        let site = natbake::validate::load(&repo().join(&spec.path)).unwrap();
        let rendered = render::render_site(&templates, &site).unwrap();
        let mut view = View::new(&site);
        view.add_files(&rendered.artifacts, false);
        field_paths("", &serde_json::to_value(&view).unwrap(), &mut fields);
    }
    fields
}

fn readme() -> String {
    std::fs::read_to_string(repo().join("templates/README.md")).unwrap()
}

/// The lines of the README section headed `heading`.
fn section<'a>(text: &'a str, heading: &str) -> Vec<&'a str> {
    text.lines()
        .skip_while(|l| *l != heading)
        .skip(1)
        .take_while(|l| !l.starts_with("## "))
        .collect()
}

/// The first cell of each row of the field table: ``| `ami.region` | …``.
fn documented_fields(text: &str) -> BTreeSet<String> {
    section(text, "## The view model")
        .into_iter()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once('`'))
        .map(|(name, _)| name.to_string())
        .collect()
}

#[test]
fn every_view_field_is_documented_and_every_documented_field_exists() {
    let serialized = serialized_fields();
    let documented = documented_fields(&readme());
    assert!(serialized.contains("tables[].name"), "{serialized:?}");
    assert!(serialized.contains("files[].path"), "{serialized:?}");
    let undocumented: Vec<_> = serialized.difference(&documented).collect();
    let stale: Vec<_> = documented.difference(&serialized).collect();
    assert!(
        undocumented.is_empty() && stale.is_empty(),
        "templates/README.md, section \"The view model\": add {undocumented:?}; remove {stale:?}"
    );
}

/// The per-template table names only real fields.
#[test]
fn fields_listed_per_template_exist() {
    let serialized = serialized_fields();
    let text = readme();
    for row in section(&text, "## The templates")
        .into_iter()
        .filter(|l| l.starts_with("| `") && l.contains(".hbs`"))
    {
        let uses = row.split('|').nth(2).unwrap();
        for field in uses.split(',').map(|f| f.trim().trim_matches('`')) {
            assert!(
                serialized.contains(field),
                "templates/README.md: `{field}` in `{row}` is not a view field"
            );
        }
    }
}
