//! The command line: exit codes, atomic output, template overrides, the
//! README's example, and free text that must stay text.

use crate::fixtures::{assert_success, natbake, render, repo};
use crate::support::run;
use std::path::{Path, PathBuf};
use std::process::Command;

fn code(cmd: &mut Command) -> (i32, String) {
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn exit_codes_are_as_documented() {
    assert_eq!(
        code(natbake().args(["check", "images/corp-prod.yaml"])).0,
        0
    );
    assert_eq!(
        code(natbake().args(["check", "tests/fixtures/invalid/port-22.yaml"])).0,
        3
    );
    assert_eq!(code(natbake().args(["check"])).0, 2);
    assert_eq!(
        code(natbake().args(["render", "images/corp-prod.yaml"])).0,
        2,
        "-o is required"
    );
    assert_eq!(code(natbake().args(["frobnicate"])).0, 2);
    let (c, err) = code(natbake().args(["check", "no/such/spec.yaml"]));
    assert_eq!(c, 1, "an unreadable file is a failure, not an invalid spec");
    assert!(
        err.starts_with("error: cannot read site spec `no/such/spec.yaml`\ncaused by: "),
        "{err}"
    );
    assert_eq!(code(natbake().arg("--version")).0, 0);
}

#[test]
fn build_renders_every_image_in_sorted_order() {
    let out = tempfile::tempdir().unwrap();
    let run = natbake()
        .args(["build", "images", "-o"])
        .arg(out.path())
        .output()
        .unwrap();
    assert_success(&run, "natbake build images");
    let stdout = String::from_utf8(run.stdout).unwrap();
    let sites: Vec<&str> = stdout
        .lines()
        .map(|l| l.rsplit('/').next().unwrap())
        .collect();
    assert_eq!(
        sites,
        ["corp-prod", "legacy-nat", "media-edge", "ops-bastion"]
    );
    assert_eq!(
        entries(out.path()),
        sites,
        "no temporary folders are left behind"
    );
}

/// Builds a folder holding `specs` (name in the folder, file in the repo)
/// and returns the exit code, stderr, and what the output folder holds.
fn build_of(specs: &[(&str, &str)]) -> (i32, String, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    for (name, file) in specs {
        std::fs::copy(repo().join(file), dir.path().join(name)).unwrap();
    }
    let out = tempfile::tempdir().unwrap();
    let (c, err) = code(
        natbake()
            .arg("build")
            .arg(dir.path())
            .arg("-o")
            .arg(out.path()),
    );
    (c, err, entries(out.path()))
}

#[test]
fn a_bad_spec_fails_the_build_and_nothing_is_written() {
    let (c, err, written) = build_of(&[
        ("a.yaml", "images/corp-prod.yaml"),
        ("b.yaml", "tests/fixtures/invalid/port-22.yaml"),
    ]);
    assert_eq!(c, 3, "{err}");
    assert!(err.contains("b.yaml"), "the bad spec is named: {err}");
    assert!(written.is_empty(), "the good spec was not written either");
}

#[test]
fn two_specs_for_one_site_are_refused() {
    let (c, err, written) = build_of(&[
        ("a.yaml", "images/corp-prod.yaml"),
        ("b.yaml", "images/corp-prod.yaml"),
    ]);
    assert_eq!(c, 3, "{err}");
    assert!(err.contains("site `corp-prod` is defined twice"), "{err}");
    assert!(written.is_empty());
}

#[test]
fn rendering_again_replaces_the_site_folder_whole() {
    let out = tempfile::tempdir().unwrap();
    for _ in 0..2 {
        assert_success(
            &natbake()
                .args(["render", "images/corp-prod.yaml", "-o"])
                .arg(out.path())
                .output()
                .unwrap(),
            "render",
        );
    }
    std::fs::write(out.path().join("corp-prod/stale-file"), "x").unwrap();
    assert_success(
        &natbake()
            .args(["render", "images/corp-prod.yaml", "-o"])
            .arg(out.path())
            .output()
            .unwrap(),
        "render",
    );
    assert_eq!(entries(out.path()), ["corp-prod"]);
    assert!(
        !out.path().join("corp-prod/stale-file").exists(),
        "the old folder is replaced, not merged"
    );
}

#[test]
fn scripts_are_executable_and_the_rest_is_not() {
    let site = render(Path::new("images/corp-prod.yaml"));
    for (name, _) in crate::fixtures::files(&site.site_dir) {
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(site.site_dir.join(&name))
                .unwrap()
                .permissions(),
        ) & 0o777;
        // `user-data.yaml.gz` is the user data's compressed form.
        let entry = natbake::render::artifact(name.strip_suffix(".gz").unwrap_or(&name));
        assert_eq!(mode, entry.mode, "{name}");
    }
}

#[test]
fn templates_can_be_dumped_and_overridden_file_by_file() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("t");
    assert_success(
        &natbake()
            .args(["templates", "dump"])
            .arg(&t)
            .output()
            .unwrap(),
        "dump",
    );
    let templates = natbake::render::artifact::ARTIFACTS
        .iter()
        .filter(|a| a.template.is_some())
        .count();
    // The templates, and the instance's scripts with their comments.
    assert_eq!(entries(&t).len(), templates + 1);
    for s in natbake::render::instance::SCRIPTS {
        assert_eq!(
            std::fs::read_to_string(t.join("instance").join(s.artifact)).unwrap(),
            s.source
        );
    }
    let (c, err) = code(natbake().args(["templates", "dump"]).arg(&t));
    assert_eq!(c, 1, "dump never overwrites: {err}");

    // The whole dump is a templates folder as it is; an edited instance
    // script in it is refused: natbake installs its own.
    let whole = dir.path().join("whole");
    assert_success(
        &natbake()
            .arg("--templates")
            .arg(&t)
            .args(["render", "images/corp-prod.yaml", "-o"])
            .arg(&whole)
            .output()
            .unwrap(),
        "render with the dump",
    );
    let edited = t.join("instance/configure-pat.sh");
    let script = std::fs::read_to_string(&edited).unwrap();
    std::fs::write(&edited, format!("{script}echo edited\n")).unwrap();
    let (c, err) = code(
        natbake()
            .arg("--templates")
            .arg(&t)
            .args(["render", "images/corp-prod.yaml", "-o"])
            .arg(dir.path().join("edited")),
    );
    assert_eq!(c, 1, "{err}");
    assert!(err.contains("cannot be overridden"), "{err}");

    // Keep only one override, changed.
    let custom = dir.path().join("custom");
    std::fs::create_dir(&custom).unwrap();
    let text = std::fs::read_to_string(t.join("sysctl.conf.hbs")).unwrap();
    std::fs::write(
        custom.join("sysctl.conf.hbs"),
        format!("{text}# local override\n"),
    )
    .unwrap();
    let out = dir.path().join("out");
    assert_success(
        &natbake()
            .arg("--templates")
            .arg(&custom)
            .args(["render", "images/corp-prod.yaml", "-o"])
            .arg(&out)
            .output()
            .unwrap(),
        "render",
    );
    let sysctl = std::fs::read_to_string(out.join("corp-prod/sysctl.conf")).unwrap();
    assert!(sysctl.ends_with("# local override\n"));
    let embedded = render(Path::new("images/corp-prod.yaml"));
    assert_eq!(
        std::fs::read(out.join("corp-prod/rules.v4")).unwrap(),
        std::fs::read(embedded.site_dir.join("rules.v4")).unwrap(),
        "templates that are not overridden stay embedded"
    );
}

#[test]
fn a_broken_or_unknown_override_is_an_error_not_a_fallback() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    for (file, text, expect) in [
        ("rules.v4.hbs", "{{#if site}}unclosed", "does not parse"),
        (
            "rules.v4.hbs",
            "{{no_such_field}}\n",
            "cannot render `rules.v4`",
        ),
        ("rulez.v4.hbs", "x", "is not a natbake template"),
    ] {
        let custom = dir.path().join(format!("c-{file}-{}", expect.len()));
        std::fs::create_dir(&custom).unwrap();
        std::fs::write(custom.join(file), text).unwrap();
        let (c, err) = code(
            natbake()
                .arg("--templates")
                .arg(&custom)
                .args(["render", "images/corp-prod.yaml", "-o"])
                .arg(&out),
        );
        assert_eq!(c, 1, "{err}");
        assert!(err.contains(expect), "{err}");
        assert!(
            entries(&out).is_empty(),
            "nothing is written: {:?}",
            entries(&out)
        );
    }
}

/// The spec blocks in the README and in the reference (`docs/`) are real
/// specs.
#[test]
fn the_readme_examples_validate() {
    let mut docs: Vec<PathBuf> = std::fs::read_dir(repo().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    docs.insert(0, repo().join("README.md"));
    let mut blocks: Vec<(String, String)> = Vec::new();
    for doc in &docs {
        let text = std::fs::read_to_string(doc).unwrap();
        let name = doc.strip_prefix(repo()).unwrap().display().to_string();
        for (i, b) in text.split("```yaml\n").skip(1).enumerate() {
            let block = b.split("```").next().unwrap();
            blocks.push((format!("{name} yaml block {i}"), block.to_owned()));
        }
    }
    assert!(
        blocks.len() >= 2,
        "the README shows the worked example, docs/spec.md the reference"
    );
    assert!(
        blocks.iter().any(|(n, _)| n.starts_with("docs/spec.md")),
        "docs/spec.md shows every field"
    );
    let dir = tempfile::tempdir().unwrap();
    for (i, (name, block)) in blocks.iter().enumerate() {
        let path = dir.path().join(format!("doc-{i}.yaml"));
        std::fs::write(&path, block).unwrap();
        assert_success(&natbake().arg("check").arg(&path).output().unwrap(), name);
    }
    // The worked example, the README's first spec, is the seed's scenario
    // as shipped in images/.
    assert_eq!(blocks[0].0, "README.md yaml block 0");
    assert_eq!(
        blocks[0].1,
        std::fs::read_to_string(repo().join("images/corp-prod.yaml")).unwrap()
    );
}

/// The README's artifact table says what the code's table says: the same
/// files in the same order, each made from, installed at, with the mode,
/// for the operating systems and at the times the code has.
#[test]
fn the_readme_artifact_table_is_the_codes() {
    use natbake::render::ARTIFACTS;
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let header = "| file | made from | installed at | mode | os | written | what it is |";
    let table = readme
        .split_once(&format!("\n{header}\n"))
        .expect("the README has the artifact table")
        .1;
    let rows: Vec<Vec<&str>> = table
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with('|'))
        .map(|l| l.trim_matches('|').split('|').map(str::trim).collect())
        .collect();
    let code: Vec<Vec<String>> = ARTIFACTS
        .iter()
        .map(|a| {
            vec![
                format!("`{}`", a.name),
                a.made_from(),
                a.install_path.map_or("—".into(), |p| format!("`{p}`")),
                format!("{:04o}", a.mode),
                a.os.describe().into(),
                a.when.describe().into(),
            ]
        })
        .collect();
    let readme_cells: Vec<Vec<&str>> = rows.iter().map(|r| r[..6.min(r.len())].to_vec()).collect();
    assert_eq!(
        readme_cells, code,
        "README.md's artifact table differs from ARTIFACTS"
    );
}

/// Free text built to break out of shell quoting is data: it is not in
/// the boot script at all, and site.conf's reader, the lib's
/// load_site_conf, gives it back as text without running any of it.
#[test]
fn hostile_text_stays_text_in_the_boot_script() {
    let site = render(Path::new("tests/fixtures/valid/hostile-text.yaml"));
    let script = std::fs::read_to_string(site.site_dir.join("configure-pat.sh")).unwrap();
    assert!(!script.contains("pwned"), "spec text in the boot script");
    let scratch = tempfile::tempdir().unwrap();
    let out = run(Command::new("bash")
        .args([
            "-c",
            ". \"$1\" && load_site_conf \"$2\" || exit 1\nprintf '%s\\n' \"$DESCRIPTION\"\nsite_conf_records summary \"$2\"",
            "bash",
        ])
        .arg(site.site_dir.join("natbake-lib.sh"))
        .arg(site.site_dir.join("site.conf"))
        .current_dir(scratch.path())
        .env("HOME", scratch.path()));
    let printed = String::from_utf8(out.stdout).unwrap();
    let spec =
        std::fs::read_to_string(repo().join("tests/fixtures/valid/hostile-text.yaml")).unwrap();
    assert!(
        printed.contains("$(touch /tmp/pwned-sub) `id` ${jndi:x}"),
        "{printed}"
    );
    assert!(
        printed.contains("\" -j ACCEPT; $(reboot) '; exec sh; '"),
        "{printed}"
    );
    assert!(!Path::new("/tmp/pwned-sh").exists() && !Path::new("/tmp/pwned-sub").exists());
    assert!(spec.contains("pwned-sh"));
    let rules = std::fs::read_to_string(site.site_dir.join("rules.v4")).unwrap();
    assert!(
        !rules.contains("reboot") && !rules.contains("ACCEPT;"),
        "no free text reaches the ruleset"
    );
}

/// The AMI description, decoded by Packer's own HCL parser, is the
/// original text, with only Go-template braces written as a template
/// action (which Packer's template step turns back into `{{`).
#[test]
fn hostile_text_stays_text_in_the_packer_template() {
    let site = render(Path::new("tests/fixtures/valid/hostile-text.yaml"));
    let hcl = std::fs::read_to_string(site.site_dir.join("nat-ami.pkr.hcl")).unwrap();
    let value = hcl
        .lines()
        .find_map(|l| l.trim().strip_prefix("ami_description = "))
        .expect("an ami_description line");
    let work = tempfile::tempdir().unwrap();
    std::fs::write(
        work.path().join("d.pkr.hcl"),
        format!("locals {{\n  d = {value}\n}}\n"),
    )
    .unwrap();
    let out = run(Command::new("sh")
        .args(["-c", "echo local.d | packer console d.pkr.hcl"])
        .env("CHECKPOINT_DISABLE", "1")
        .current_dir(work.path()));
    let decoded = String::from_utf8(out.stdout).unwrap();
    let description = site.manifest.description.as_deref().unwrap();
    assert!(description.contains("${jndi:x} %{if true}") && description.contains("{{ .Vars }}"));
    let expected = format!(
        "natbake hostile-text: {}",
        description.replace("{{", "{{\"{{\"}}")
    );
    assert_eq!(decoded.trim_end_matches('\n'), expected);
}

/// Hostile input is refused quickly and by name: a file over the size
/// limit, and nesting far deeper than any spec needs.
#[test]
fn oversized_and_deeply_nested_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let huge = dir.path().join("huge.yaml");
    let mut text = String::from("version: 1\nsite: huge\nvpc_cidrs: [10.0.0.0/16]\ndescription: ");
    text.push_str(&"x".repeat(17 * 1024 * 1024));
    std::fs::write(&huge, text).unwrap();
    let (c, err) = code(natbake().arg("check").arg(&huge));
    assert_eq!(c, 3, "{err}");
    assert!(
        err.contains("huge.yaml: the file is larger than 16 MiB"),
        "{err}"
    );

    let deep = dir.path().join("deep.yaml");
    std::fs::write(
        &deep,
        format!(
            "version: 1\nsite: deep\nvpc_cidrs: {}\n",
            "[".repeat(100_000)
        ),
    )
    .unwrap();
    let (c, err) = code(natbake().arg("check").arg(&deep));
    assert_eq!(c, 3, "{err}");
    assert!(
        err.contains("deep.yaml:3:") && err.contains("vpc_cidrs: recursion limit exceeded"),
        "{err}"
    );
}

/// A reader that goes away ends the report quietly and the work still gets
/// done; a full disk behind stdout or stderr is a failure (exit 1) or keeps
/// the command's own code, never a panic.
#[test]
fn a_closed_or_full_output_stream_is_no_panic() {
    let closed = || {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        writer
    };
    let full = || {
        std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap()
    };
    let images = [
        "images/corp-prod.yaml",
        "images/legacy-nat.yaml",
        "images/media-edge.yaml",
        "images/ops-bastion.yaml",
    ];

    let out = natbake()
        .arg("check")
        .args(images)
        .stdout(closed())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let dir = tempfile::tempdir().unwrap();
    let built = dir.path().join("out");
    let out = natbake()
        .args(["build", "images", "-o"])
        .arg(&built)
        .stdout(closed())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(entries(&built).len(), 4, "the work is done all the same");

    let (c, err) = code(natbake().arg("check").args(images).stdout(full()));
    assert_eq!(c, 1, "{err}");
    assert!(
        err.starts_with("error: cannot write to standard output\ncaused by: "),
        "{err}"
    );

    let (c, err) = code(
        natbake()
            .args(["templates", "dump"])
            .arg(dir.path().join("t"))
            .stdout(full()),
    );
    assert_eq!(c, 1, "{err}");

    assert_eq!(code(natbake().arg("--help").stdout(full())).0, 1);
    let out = natbake().arg("--help").stdout(closed()).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stderr.is_empty());

    let out = natbake()
        .args(["check", "tests/fixtures/invalid/port-22.yaml"])
        .stderr(full())
        .status()
        .unwrap();
    assert_eq!(out.code(), Some(3));
    let out = natbake()
        .args(["check", "tests/fixtures/invalid/port-22.yaml"])
        .stderr(closed())
        .status()
        .unwrap();
    assert_eq!(out.code(), Some(3));
}

/// Templates that include templates could include themselves and recurse
/// until the stack overflows; they are refused with a message instead.
#[test]
fn templates_that_include_templates_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (label, files) in [
        (
            "itself",
            vec![(
                "sysctl.conf.hbs",
                "a\n{{#if site}}{{> sysctl.conf}}{{/if}}\n",
            )],
        ),
        (
            "each other",
            vec![
                ("sysctl.conf.hbs", "{{> rules.v4}}\n"),
                (
                    "rules.v4.hbs",
                    "{{#each forwards}}{{/each}}{{> sysctl.conf}}\n",
                ),
            ],
        ),
        (
            "an inline partial",
            vec![(
                "sysctl.conf.hbs",
                "{{#*inline \"x\"}}{{> x}}{{/inline}}{{> x}}\n",
            )],
        ),
    ] {
        let custom = dir.path().join(label);
        std::fs::create_dir(&custom).unwrap();
        for (file, text) in files {
            std::fs::write(custom.join(file), text).unwrap();
        }
        let out = dir.path().join("out");
        for command in [&["check"][..], &["render", "-o", out.to_str().unwrap()]] {
            let (c, err) = code(
                natbake()
                    .arg("--templates")
                    .arg(&custom)
                    .args(command)
                    .arg("images/corp-prod.yaml"),
            );
            assert_eq!(c, 1, "{label}, {command:?}: {err}");
            assert!(
                err.starts_with("error: template `") && err.contains("partials and decorators"),
                "{label}: {err}"
            );
        }
        assert!(!out.exists());
    }
}

/// A spec folder that cannot be listed is named once, with its cause once
/// (walkdir's message repeats the I/O error's); a symbolic link back up
/// the tree says where it leads.
#[test]
fn build_without_its_folder_says_why_once() {
    let dir = tempfile::tempdir().unwrap();
    let (c, err) = code(natbake().current_dir(dir.path()).arg("build"));
    assert_eq!(c, 1, "{err}");
    assert_eq!(
        err,
        "error: cannot list `images`\ncaused by: No such file or directory (os error 2)\n"
    );
    let specs = dir.path().join("specs");
    std::fs::create_dir_all(specs.join("a")).unwrap();
    std::os::unix::fs::symlink("..", specs.join("a/up")).unwrap();
    let (c, err) = code(natbake().current_dir(dir.path()).args(["build", "specs"]));
    assert_eq!(c, 1, "{err}");
    assert_eq!(
        err,
        "error: cannot list `specs/a/up`\ncaused by: it leads back to `specs`, a folder above it, through a symbolic link\n"
    );
}

/// A spec that is a symbolic link is a spec like any other.
#[test]
fn build_follows_symlinked_specs() {
    let dir = tempfile::tempdir().unwrap();
    let specs = dir.path().join("specs");
    std::fs::create_dir(&specs).unwrap();
    std::os::unix::fs::symlink(repo().join("images/corp-prod.yaml"), specs.join("a.yaml")).unwrap();
    std::fs::copy(repo().join("images/media-edge.yaml"), specs.join("b.yaml")).unwrap();
    let out = dir.path().join("out");
    let run = natbake()
        .arg("build")
        .arg(&specs)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert_success(&run, "build");
    assert_eq!(entries(&out), ["corp-prod", "media-edge"]);
}

/// An output folder inside the spec folder holds artifacts, not specs
/// (`user-data.yaml`), however often the build runs.
#[test]
fn build_does_not_read_its_own_output() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        repo().join("images/corp-prod.yaml"),
        dir.path().join("corp-prod.yaml"),
    )
    .unwrap();
    let out = dir.path().join("build");
    for _ in 0..2 {
        let run = natbake()
            .arg("build")
            .arg(dir.path())
            .arg("-o")
            .arg(&out)
            .output()
            .unwrap();
        assert_success(&run, "build into a folder inside the specs");
        assert_eq!(String::from_utf8_lossy(&run.stdout).lines().count(), 1);
    }
    assert_eq!(entries(&out), ["corp-prod"]);
    let (c, err) = code(
        natbake()
            .arg("build")
            .arg(dir.path())
            .arg("-o")
            .arg(dir.path()),
    );
    assert_eq!(c, 1, "{err}");
    assert!(err.contains("is the spec folder"), "{err}");
}

/// `check` renders with the overrides in memory: an override that would
/// fail `render` fails `check`, and check writes nothing.
#[test]
fn check_renders_with_the_template_overrides() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rules.v4.hbs"), "{{no_such_field}}\n").unwrap();
    let (c, err) = code(
        natbake()
            .arg("--templates")
            .arg(dir.path())
            .arg("check")
            .arg(repo().join("images/corp-prod.yaml"))
            .current_dir(dir.path()),
    );
    assert_eq!(c, 1, "{err}");
    assert!(err.contains("cannot render `rules.v4` for site `"), "{err}");
    assert_eq!(
        entries(dir.path()),
        ["rules.v4.hbs"],
        "check writes nothing"
    );
}

/// With several specs, exit 3 means every one is invalid; an unreadable
/// file among them makes it a failure (exit 1), and each keeps its cause.
#[test]
fn several_failures_keep_their_causes_and_the_right_code() {
    let (c, err) = code(natbake().args([
        "check",
        "images/corp-prod.yaml",
        "no/such/spec.yaml",
        "tests/fixtures/invalid/port-22.yaml",
    ]));
    assert_eq!(c, 1, "{err}");
    assert!(
        err.contains(
            "cannot read site spec `no/such/spec.yaml`\n  caused by: No such file or directory"
        ),
        "{err}"
    );
    assert!(
        err.contains("tests/fixtures/invalid/port-22.yaml:"),
        "{err}"
    );

    let (c, err) = code(natbake().args([
        "check",
        "tests/fixtures/invalid/port-22.yaml",
        "tests/fixtures/invalid/port-22.yaml",
    ]));
    assert_eq!(c, 3, "{err}");
    assert!(
        err.starts_with("error: 2 of 2 site specs are invalid"),
        "{err}"
    );
}

/// Spec text and file names quoted in messages are escaped, so each
/// problem stays one `FILE:LINE:COL: path: message` line.
#[test]
fn messages_escape_control_characters() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("a\nb.yaml");
    std::fs::write(
        &spec,
        "version: 1\nsite: ctl\nvpc_cidrs: [10.0.0.0/16]\nsysctl:\n  \"net.ipv4.x\\nbad\": 1\n  net.ipv4.y: \"a\\e[31mb\"\n",
    )
    .unwrap();
    let (c, err) = code(
        natbake()
            .arg("check")
            .arg(&spec)
            .arg(dir.path().join("no\rsuch.yaml")),
    );
    assert_eq!(c, 1, "{err}");
    let shown = format!("{}/a\\nb.yaml", dir.path().display());
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 6, "{err}");
    assert_eq!(
        lines[1],
        format!("`{shown}` is not a valid site spec (2 problems)")
    );
    assert!(
        lines[2].starts_with(&format!(
            "  {shown}:5:3: sysctl.net.ipv4.x\\nbad: `net.ipv4.x\\nbad` is not"
        )),
        "{err}"
    );
    assert!(
        lines[3].starts_with(&format!(
            "  {shown}:6:15: sysctl.net.ipv4.y: `a\\u{{1b}}[31mb` is not"
        )),
        "{err}"
    );
    assert!(lines[4].ends_with("no\\rsuch.yaml`"), "{err}");
}

/// The README's test command works as root without sudo, and as another
/// user through sudo, which it calls itself.
#[test]
fn the_test_script_runs_itself_through_sudo_when_not_root() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    assert!(
        readme.contains("```sh\nscripts/test.sh\n```"),
        "the README shows the command"
    );
    assert!(!readme.contains("sudo scripts/test.sh"));
    let ci = std::fs::read_to_string(repo().join(".ci/run")).unwrap();
    assert!(ci.lines().any(|l| l == "exec scripts/test.sh"), "{ci}");
    if !crate::support::require_root("switching to another user") {
        return;
    }
    // A copy of the script that user `nobody` can read, and a stand-in for
    // sudo that shows how it was called.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("scripts")).unwrap();
    std::fs::copy(repo().join("scripts/test.sh"), root.join("scripts/test.sh")).unwrap();
    let with_sudo = root.join("with-sudo");
    let without_sudo = root.join("without-sudo");
    for bin in [&with_sudo, &without_sudo] {
        std::fs::create_dir(bin).unwrap();
        for tool in ["bash", "id", "dirname", "env", "cat", "printf"] {
            let path = crate::support::run_stdout(
                Command::new("bash").args(["-c", &format!("command -v {tool}")]),
            );
            std::os::unix::fs::symlink(path.trim(), bin.join(tool)).unwrap();
        }
    }
    std::fs::write(
        with_sudo.join("sudo"),
        "#!/bin/bash\nprintf '%s\\n' \"$@\"\n",
    )
    .unwrap();
    run(Command::new("chmod").args(["-R", "a+rX"]).arg(root));
    run(Command::new("chmod").arg("a+x").arg(with_sudo.join("sudo")));
    let setpriv =
        crate::support::run_stdout(Command::new("bash").args(["-c", "command -v setpriv"]));
    let as_nobody = |path: &Path| {
        // The child's PATH is where Command looks for the program: give it whole.
        let mut cmd = Command::new(setpriv.trim());
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(path.join("bash"))
            .arg("scripts/test.sh")
            .current_dir(root)
            .env_clear()
            .env("PATH", path)
            .env("HOME", "/nonexistent")
            .env("NATBAKE_CACHE_DIR", "/cache");
        cmd.output().unwrap()
    };
    let out = as_nobody(&with_sudo);
    assert_success(&out, "scripts/test.sh as nobody, with sudo");
    let args = String::from_utf8(out.stdout).unwrap();
    let args: Vec<&str> = args.lines().collect();
    assert_eq!(
        args,
        [
            "env",
            &format!("PATH={}", with_sudo.display()),
            "CARGO_HOME=/nonexistent/.cargo",
            "RUSTUP_HOME=/nonexistent/.rustup",
            "NATBAKE_CACHE_DIR=/cache",
            "bash",
            "scripts/test.sh",
        ]
    );
    let out = as_nobody(&without_sudo);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("run it as root"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `build` keeps no site in memory once written: its peak memory for 500
/// sites is within a few hundred bytes per site of that for 50 (keeping
/// every parsed site, as a validate-everything-first pass might, costs
/// about 10 KB per site of 50 forwards).
#[test]
fn build_memory_does_not_grow_with_the_number_of_sites() {
    let dir = tempfile::tempdir().unwrap();
    let peak_kb = |sites: usize| {
        let specs = dir.path().join(format!("specs-{sites}"));
        run(Command::new("python3")
            .arg(repo().join("bench/gen-specs.py"))
            .args([
                "specs",
                "--forwards",
                "50",
                "--specs",
                &sites.to_string(),
                "--out",
            ])
            .arg(&specs));
        let report = dir.path().join(format!("time-{sites}"));
        run(Command::new("/usr/bin/time")
            .args(["-f", "%M", "-o"])
            .arg(&report)
            .arg(env!("CARGO_BIN_EXE_natbake"))
            .arg("build")
            .arg(&specs)
            .arg("-o")
            .arg(dir.path().join(format!("out-{sites}"))));
        let text = std::fs::read_to_string(&report).unwrap();
        text.trim()
            .parse::<u64>()
            .unwrap_or_else(|_| panic!("{text}"))
    };
    let few = peak_kb(50);
    let many = peak_kb(500);
    assert!(
        many < few + 2_500,
        "peak RSS grew from {few} kB at 50 sites to {many} kB at 500"
    );
}
