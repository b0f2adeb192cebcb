//! Random site specs that are valid by construction, except for the free
//! text, which draws on all of Unicode so that validation decides. Seeded
//! and deterministic, so a failure reproduces from its case number.

/// A small deterministic generator (xorshift), so the tests need no crate.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Characters that have broken, or could break, some artifact's quoting:
/// shell, YAML, HCL, Go templates, JSON; and the edges of YAML's printable
/// ranges.
const AWKWARD: &[char] = &[
    '\'',
    '"',
    '\\',
    '$',
    '`',
    '{',
    '}',
    '%',
    '#',
    ':',
    '-',
    '[',
    ']',
    '|',
    '>',
    '&',
    '*',
    '!',
    '?',
    ',',
    '@',
    '~',
    ';',
    '(',
    ')',
    '<',
    '=',
    '/',
    '\u{a0}',
    '\u{e9}',
    '\u{300}',
    '\u{2713}',
    '\u{4e2d}',
    '\u{d7ff}',
    '\u{e000}',
    '\u{fffd}',
    '\u{10000}',
    '\u{1f600}',
    '\u{10fffd}',
    '\u{2027}',
    '\u{202f}',
    '\u{3000}',
    // Typographic quotes: shellcheck warns on ‘ and ’ even inside single
    // quotes (SC1112).
    '\u{2018}',
    '\u{2019}',
    '\u{201c}',
    '\u{201d}',
    '\u{ff04}',
];

/// Whole words that some consumer reads as its own syntax: CloudFormation
/// substitutions of real names (cfn-lint's E1029 fires only on a name the
/// template defines), HCL and Go template openers, shell expansions.
pub const TOKENS: &[&str] = &[
    "${AWS::Region}",
    "${AWS::StackName}",
    "${VpcId}",
    "${Instance.PrivateIp}",
    "${!Literal}",
    "%{ if true }",
    "{{ .Vars }}",
    "{{timestamp}}",
    "$(id)",
    "`id`",
    "'\\''",
    "it’s",
];

/// Up to 40 pieces: half of them awkward characters, one in 20 a whole
/// [`TOKENS`] word, most others printable ASCII, and one in 40 any code
/// point at all.
pub fn text(rng: &mut Rng) -> String {
    let len = 1 + rng.below(40);
    let mut s = String::new();
    for _ in 0..len {
        match rng.below(40) {
            0 => s.push(any_char(rng)),
            1..=20 => s.push(*rng.pick(AWKWARD)),
            21 | 22 => {
                let token: &&str = rng.pick(TOKENS);
                s.push_str(token)
            }
            _ => s.push(char::from(0x20 + rng.below(0x5f) as u8)),
        }
    }
    // Free text may have 200 characters.
    s.chars().take(200).collect()
}

/// Blocks of code points where formats disagree: controls, the edges of
/// the BMP's private use and surrogate gaps, general punctuation (line
/// separators, direction marks), noncharacters, and the end of each plane.
const EDGES: &[(u32, u32)] = &[
    (0x00, 0x20),
    (0x7f, 0xa0),
    (0x2000, 0x206f),
    (0xd7f0, 0xe010),
    (0xfdc0, 0xfdff),
    (0xfff0, 0xffff),
];

/// Any code point: half of the time from [`EDGES`] or the last few of a
/// plane, otherwise from anywhere.
fn any_char(rng: &mut Rng) -> char {
    loop {
        let n = match rng.below(4) {
            0 => {
                let &(lo, hi) = rng.pick(EDGES);
                lo + rng.below((hi - lo + 1) as usize) as u32
            }
            1 => (rng.below(17) as u32) << 16 | (0xfffa + rng.below(6) as u32),
            _ => rng.below(0x11_0000) as u32,
        };
        if let Some(c) = char::from_u32(n) {
            return c;
        }
    }
}

/// A YAML double-quoted scalar that spells out everything but printable
/// ASCII, so the spec file itself is plain and the parser decodes the text.
fn quoted(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            ' '..='~' => out.push(c),
            c if (c as u32) <= 0xffff => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push_str(&format!("\\U{:08X}", c as u32)),
        }
    }
    out.push('"');
    out
}

/// One VPC block per slot, from ranges that cannot overlap each other.
fn vpc_block(rng: &mut Rng, slot: usize) -> (u32, u8) {
    let (base, prefix) = match slot {
        0 => ([10, rng.below(256) as u8, 0, 0], 16),
        1 => (
            [172, 16 + rng.below(16) as u8, 16 * rng.below(16) as u8, 0],
            20,
        ),
        2 => ([192, 168, rng.below(256) as u8, 0], 24),
        3 => ([100, 64 + rng.below(64) as u8, 0, 0], 16),
        _ => (
            [198, 19, rng.below(256) as u8, 16 * rng.below(16) as u8],
            28,
        ),
    };
    (u32::from_be_bytes(base), prefix)
}

fn dotted(addr: u32) -> String {
    std::net::Ipv4Addr::from(addr).to_string()
}

/// A spec that is valid unless its free text holds a character that
/// validation refuses.
pub fn spec(rng: &mut Rng, case: usize) -> String {
    let mut y = String::new();
    y.push_str(&format!("version: 1\nsite: p{case}\n"));
    if rng.chance(70) {
        y.push_str(&format!("description: {}\n", quoted(&text(rng))));
    }
    let os = *rng.pick(&[
        "amazon-linux-2023",
        "ubuntu-24.04",
        "debian-12",
        "amzn-ami-vpc-nat",
    ]);
    let arch = if os == "amzn-ami-vpc-nat" {
        "x86_64"
    } else {
        *rng.pick(&["x86_64", "arm64"])
    };
    y.push_str(&format!("os: {os}\narch: {arch}\n"));
    let vpc: Vec<(u32, u8)> = (0..1 + rng.below(5)).map(|s| vpc_block(rng, s)).collect();
    let list: Vec<String> = vpc
        .iter()
        .map(|&(b, p)| format!("{}/{p}", dotted(b)))
        .collect();
    y.push_str(&format!(
        "vpc_cidrs: [{}]\negress: {}\n",
        list.join(", "),
        rng.chance(80)
    ));
    let forwards = rng.below(7);
    if forwards > 0 {
        y.push_str("forwards:\n");
    }
    let mut next_port = 1024 + rng.below(1000);
    for f in 0..forwards {
        let first = next_port + rng.below(500);
        let last = if rng.chance(30) {
            first + 1 + rng.below(40)
        } else {
            first
        };
        next_port = last + 1;
        let (base, prefix) = *rng.pick(&vpc);
        let hosts = (1u32 << (32 - prefix)) - 2;
        let target = dotted(base + 1 + rng.below(hosts as usize) as u32);
        let to = if first == last && rng.chance(70) {
            format!("{target}:{}", 1 + rng.below(65535))
        } else {
            target
        };
        let ports = if first == last {
            first.to_string()
        } else {
            format!("\"{first}-{last}\"")
        };
        let proto = *rng.pick(&["tcp", "udp"]);
        y.push_str(&format!(
            "  - name: f{f}\n    proto: {proto}\n    port: {ports}\n    to: {to}\n"
        ));
        if rng.chance(15) {
            y.push_str("    from: [0.0.0.0/0]\n    public: true\n");
        } else {
            let n = 1 + rng.below(4);
            let from: Vec<String> = (0..n)
                .map(|k| {
                    let prefix = 24 + rng.below(9) as u32;
                    let base = (203 << 24 | (k as u32) << 16 | (rng.below(256) as u32) << 8)
                        & (u32::MAX << (32 - prefix));
                    format!("{}/{prefix}", dotted(base))
                })
                .collect();
            y.push_str(&format!("    from: [{}]\n", from.join(", ")));
        }
        y.push_str(&format!("    log: {}\n", rng.chance(30)));
        if rng.chance(60) {
            y.push_str(&format!("    description: {}\n", quoted(&text(rng))));
        }
    }
    if rng.chance(40) {
        y.push_str("sysctl:\n");
        y.push_str(&format!(
            "  net.netfilter.nf_conntrack_max: {}\n",
            65536 + rng.below(1 << 20)
        ));
        if rng.chance(50) {
            y.push_str("  net.ipv4.ip_local_port_range: \"1024 65000\"\n");
        }
    }
    if rng.chance(60) {
        y.push_str("ami:\n  region: us-east-1\n  copy_to: [eu-west-1]\n");
        y.push_str("  share_with: [\"012345678901\"]\n  tags: {team: \"net ops/a+b=c@d:e\"}\n");
    }
    y
}
