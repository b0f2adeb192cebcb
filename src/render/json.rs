//! The JSON artifacts, written with serde_json (which escapes every string):
//! `security-group.json`, the `--ip-permissions` input of
//! `aws ec2 authorize-security-group-ingress`, and `manifest.json`.

use super::{Artifact, sha256_hex};
use crate::site::Site;
use serde_json::{Value, json};

/// One permission per forward, its sources as `IpRanges`. Descriptions use
/// only the site and forward names, which fit the characters AWS allows
/// in rule descriptions.
pub fn security_group(site: &Site) -> Vec<u8> {
    let perms: Vec<Value> = site
        .forwards
        .iter()
        .map(|f| {
            let ranges: Vec<Value> = f
                .from
                .iter()
                .map(|c| json!({"CidrIp": c.to_string(), "Description": format!("natbake {} {}", site.name, f.name)}))
                .collect();
            json!({
                "IpProtocol": f.proto.name(),
                "FromPort": f.ports.first,
                "ToPort": f.ports.last,
                "IpRanges": ranges,
            })
        })
        .collect();
    pretty(&Value::Array(perms))
}

/// What was rendered from what: natbake's version, the spec's digest, the
/// forwards as machine-readable data, and every artifact's path, install
/// path, mode, size and SHA-256.
pub fn manifest(site: &Site, artifacts: &[Artifact]) -> Vec<u8> {
    let forwards: Vec<Value> = site
        .forwards
        .iter()
        .map(|f| {
            json!({
                "name": f.name,
                "proto": f.proto.name(),
                "listen_ports": [f.ports.first, f.ports.last],
                "target_address": f.target.to_string(),
                "target_ports": [f.target_ports.first, f.target_ports.last],
                "from": f.from.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
                "public": f.public,
                "log": f.log,
                "description": f.description,
            })
        })
        .collect();
    let user_data = artifacts
        .iter()
        .find(|a| a.name.starts_with("user-data.yaml"))
        .map(|a| json!({"file": a.name, "gzip": a.name.ends_with(".gz"), "bytes": a.bytes.len()}));
    let files: Vec<Value> = artifacts
        .iter()
        .map(|a| {
            json!({
                "path": a.name,
                "install_path": a.install_path,
                "mode": format!("{:04o}", a.mode),
                "size": a.bytes.len(),
                "sha256": sha256_hex(&a.bytes),
            })
        })
        .collect();
    pretty(&json!({
        "natbake_version": env!("CARGO_PKG_VERSION"),
        "site": site.name,
        "description": site.description,
        "spec_sha256": site.spec_sha256,
        "os": site.os.name(),
        "arch": site.arch.name(),
        "vpc_cidrs": site.vpc_cidrs.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
        "egress": site.egress,
        "forwards": forwards,
        "user_data": user_data,
        "artifacts": files,
    }))
}

fn pretty(v: &Value) -> Vec<u8> {
    let mut out = serde_json::to_vec_pretty(v).unwrap_or_default();
    out.push(b'\n');
    out
}
