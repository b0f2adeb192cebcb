//! The metadata service of the lab's NAT instance: `imds_stub.py`, an
//! IMDSv2-only stub on 169.254.169.254 in the NAT namespace, which reports
//! the VPC's CIDR blocks the test chooses and can fail on purpose; or no
//! metadata service at all.

use std::fs;

use natbake::cidr::Cidr;
use natbake::site::Proto;

use super::{IMDS_ADDRESS, Lab, script};
use crate::manifest::Manifest;

/// How the metadata stub in the NAT namespace behaves.
#[derive(Clone, Debug)]
pub enum Imds {
    /// IMDSv2 stub reporting these CIDR blocks.
    Stub(Vec<String>),
    /// No metadata service: packets to 169.254.169.254 vanish at the
    /// gateway, the worst case for a script's time-outs.
    Absent,
}

#[derive(Clone, Debug)]
pub struct LabOptions {
    pub imds: Imds,
    /// Hiccups of the metadata stub, as its `--fault` takes them:
    /// `PATH=N:KIND`, the first N requests of PATH failing with the HTTP
    /// status KIND, or with the connection dropped when KIND is `drop`.
    pub imds_faults: Vec<String>,
}

impl LabOptions {
    /// The usual case: a VPC whose CIDR blocks are the spec's plus one more,
    /// so "include" is tested rather than "equal".
    pub fn matching(m: &Manifest) -> LabOptions {
        let mut cidrs: Vec<String> = m.vpc_cidrs.iter().map(Cidr::to_string).collect();
        cidrs.push(cidr_outside(m).to_string());
        LabOptions {
            imds: Imds::Stub(cidrs),
            imds_faults: Vec::new(),
        }
    }

    /// A VPC that has none of the spec's CIDR blocks.
    pub fn mismatching(m: &Manifest) -> LabOptions {
        LabOptions {
            imds: Imds::Stub(vec![cidr_outside(m).to_string()]),
            imds_faults: Vec::new(),
        }
    }

    /// The same, with the metadata stub failing as `faults` say.
    pub fn with_imds_faults(mut self, faults: &[String]) -> LabOptions {
        self.imds_faults = faults.to_vec();
        self
    }
}

/// A private CIDR that overlaps none of the spec's.
pub fn cidr_outside(m: &Manifest) -> Cidr {
    [
        Cidr::new(172, 31, 0, 0, 16),
        Cidr::new(100, 64, 0, 0, 16),
        Cidr::new(192, 168, 0, 0, 16),
        Cidr::new(10, 255, 0, 0, 16),
    ]
    .into_iter()
    .find(|c| !m.vpc_cidrs.iter().any(|v| v.overlaps(c)))
    .expect("some private CIDR is outside the spec's VPC")
}

impl Lab {
    /// Starts the metadata stub when the options ask for one; returns what
    /// it listens on, for the readiness check.
    pub(super) fn start_imds_stub(&mut self) -> Option<(String, Proto, String)> {
        let Imds::Stub(cidrs) = self.options.imds.clone() else {
            return None;
        };
        let mut args = vec![
            script("imds_stub.py").display().to_string(),
            "--bind".into(),
            IMDS_ADDRESS.into(),
            "--port".into(),
            "80".into(),
            "--mac".into(),
            self.nat_mac.clone(),
            "--local-ipv4".into(),
            self.plan.nat_private.to_string(),
            "--log".into(),
            self.dir().join("imds.log").display().to_string(),
        ];
        for c in cidrs {
            args.push("--cidr".into());
            args.push(c);
        }
        for fault in &self.options.imds_faults {
            args.push("--fault".into());
            args.push(fault.clone());
        }
        let (nat, python) = (self.ns.nat.clone(), self.python.clone());
        self.spawn("imds stub", &nat, &python, &args);
        Some((nat, Proto::Tcp, format!("{IMDS_ADDRESS}:80")))
    }

    /// The metadata stub's request log: `METHOD PATH token|no-token STATUS`.
    pub fn imds_requests(&self) -> Vec<String> {
        fs::read_to_string(self.dir().join("imds.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with("GET ") || l.starts_with("PUT "))
            .map(str::to_owned)
            .collect()
    }
}
