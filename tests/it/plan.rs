//! `natbake plan` as a user runs it: the table says the region and the
//! prices' date, `--json` carries the same figures, every spec is checked
//! before anything is priced, and bad figures are usage errors.

use serde_json::Value;

use crate::fixtures::natbake;
use crate::support;

fn plan(args: &[&str]) -> std::process::Output {
    support::output_of(natbake().arg("plan").args(args))
}

#[test]
fn the_table_names_region_date_shapes_and_crossovers() {
    let out = plan(&["images/corp-prod.yaml", "tests/fixtures/nlb/seed.yaml"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with(&format!(
            "prices: {} on-demand, as of {}",
            natbake::prices::REGION,
            natbake::prices::DATE
        )),
        "{text}"
    );
    for want in [
        "site corp-prod (deployment: instance",
        "site corp-nlb (deployment: nlb, 3 forwards)",
        "one instance (t3.micro)",
        "instance + warm standby (2 × t3.micro)",
        "NLB + 2 NAT gateways",
        "where another shape wins:",
        "limits:",
        "nlb: at most 50 listeners",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
}

#[test]
fn json_carries_the_figures_of_the_library() {
    let out = plan(&[
        "--json",
        "--forward-gb",
        "1000",
        "--egress-gb",
        "0",
        "--zones",
        "3",
        "tests/fixtures/nlb/seed.yaml",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["prices"]["region"], "us-east-1");
    assert_eq!(doc["prices"]["hours_per_month"], 730.0);
    let site = &doc["sites"][0];
    assert_eq!(site["site"], "corp-nlb");
    assert_eq!(site["traffic"]["zones"], 3);
    let loaded =
        natbake::validate::load(&crate::fixtures::repo().join("tests/fixtures/nlb/seed.yaml"))
            .unwrap();
    let ty = natbake::prices::instance_type("t3.micro").unwrap();
    let lib = natbake::plan::plan(
        &loaded,
        ty,
        natbake::plan::Traffic {
            forward_gb: 1000.0,
            egress_gb: 0.0,
            zones: 3,
            new_flows_per_second: 1.0,
            active_flows: 100.0,
        },
    );
    // serde_json reads floats to within a unit in the last place.
    let shapes = site["shapes"].as_array().unwrap();
    assert_eq!(shapes.len(), lib.shapes.len());
    for (got, want) in shapes.iter().zip(&lib.shapes) {
        assert_eq!(got["name"], want.name);
        for (key, value) in [
            ("monthly_usd", want.monthly_usd),
            ("fixed_usd", want.fixed_usd),
            ("per_gb_usd", want.per_gb_usd),
        ] {
            let g = got[key].as_f64().unwrap();
            assert!(
                (g - value).abs() < 1e-9,
                "{}: {key} {g} != {value}",
                want.name
            );
        }
        let items: Vec<&str> = got["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["what"].as_str().unwrap())
            .collect();
        let want_items: Vec<&str> = want.items.iter().map(|i| i.what.as_str()).collect();
        assert_eq!(items, want_items);
    }
    let nlb = &site["shapes"][2];
    assert_eq!(nlb["name"], "nlb");
    assert_eq!(nlb["title"], "NLB + 3 NAT gateways");
}

#[test]
fn invalid_specs_are_reported_before_anything_is_priced() {
    let out = plan(&[
        "images/corp-prod.yaml",
        "tests/fixtures/invalid/port-22.yaml",
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("port-22.yaml:"), "{err}");
}

#[test]
fn bad_figures_and_unknown_types_are_refused() {
    for args in [
        ["--forward-gb", "-1"],
        ["--egress-gb", "lots"],
        ["--zones", "4"],
        ["--new-flows", "NaN"],
    ] {
        let mut all = args.to_vec();
        all.push("images/corp-prod.yaml");
        let out = plan(&all);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
    let out = plan(&["--instance-type", "x9.huge", "images/corp-prod.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no price for the instance type `x9.huge`") && err.contains("t4g.nano"),
        "{err}"
    );
}
