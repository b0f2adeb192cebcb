#!/bin/bash
# Installs every tool the tests use, then runs every test: formatting,
# clippy, unit tests, snapshots, the real validators, the network-namespace
# tests and the boot tests. Needs root on Debian 12 (apt, network
# namespaces, systemd-nspawn): run it as root, or as a user who may use
# sudo, and it runs itself again through sudo. CI runs exactly this script.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
  if ! command -v sudo >/dev/null 2>&1; then
    echo "scripts/test.sh installs packages and creates network namespaces: run it as root (there is no sudo here)." >&2
    exit 1
  fi
  # sudo resets the environment: pass on the Rust toolchain of the user
  # (cargo and rustup find it through PATH, CARGO_HOME and RUSTUP_HOME) and
  # the boot tests' image cache.
  keep=(
    "PATH=$PATH"
    "CARGO_HOME=${CARGO_HOME:-$HOME/.cargo}"
    "RUSTUP_HOME=${RUSTUP_HOME:-$HOME/.rustup}"
  )
  if [ -n "${NATBAKE_CACHE_DIR:-}" ]; then
    keep+=("NATBAKE_CACHE_DIR=$NATBAKE_CACHE_DIR")
  fi
  if [ -n "${NATBAKE_MOTO_VENV:-}" ]; then
    keep+=("NATBAKE_MOTO_VENV=$NATBAKE_MOTO_VENV")
  fi
  exec sudo env "${keep[@]}" bash "$0" "$@"
fi

cd "$(dirname "$0")/.."

# Debian packages: validators (shellcheck, packer, cloud-init, systemd;
# botocore checks security-group.json as the AWS CLI would; the AWS CLI
# deploys stack.cfn.yaml into moto),
# the network tests (iproute2, iptables, ipset, socat, curl) and the boot tests
# (debootstrap, systemd-nspawn, and nftables and conntrack to reset the
# namespace between boots); time measures the peak memory of a build;
# cron's `crontab -n` checks the health check's cron file; shfmt parses
# the scripts with and without their comment lines; faketime steps the
# health check's wall clock back (metrics go on by the monotonic clock);
# mawk and gawk run the shell unit tests under each awk the instances have
# (Debian and Ubuntu, Amazon Linux); keepalived and conntrackd check a
# standby pair's files and run the standby lab, whose timings bc computes.
packages=(
  shellcheck packer cloud-init systemd iptables ipset iproute2 procps util-linux
  socat curl python3 python3-yaml python3-botocore debootstrap
  systemd-container coreutils nftables conntrack time python3-venv awscli
  cron shfmt faketime mawk gawk keepalived conntrackd bc
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "Installing ${missing[*]}..."
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
  # Installing gawk makes it the system's awk; the labs run the scripts
  # under Debian's own, mawk, as a Debian instance does.
  if [[ " ${missing[*]} " == *" gawk "* ]]; then
    update-alternatives --set awk /usr/bin/mawk
  fi
fi

# The failover and metrics tests talk to a real EC2, Auto Scaling and
# CloudWatch API, and the stack tests deploy into CloudFormation: moto's
# server, pinned, in a virtual environment of its own (python3-venv), kept
# with the boot tests' cache when there is one; cfn-lint, pinned, lints the
# stacks.
moto_venv=${NATBAKE_MOTO_VENV:-${NATBAKE_CACHE_DIR:-$PWD/target}/moto-5.2.5-venv}
if ! "$moto_venv/bin/python3" -c 'import moto, boto3, cfnlint, moto.cloudformation.parsing' 2>/dev/null ||
  [ "$("$moto_venv/bin/python3" -c 'import moto; print(moto.__version__)')" != 5.2.5 ] ||
  [ "$("$moto_venv/bin/cfn-lint" --version 2>/dev/null)" != "cfn-lint 1.58.0" ]; then
  echo "Installing moto 5.2.5 and cfn-lint 1.58.0 into $moto_venv..."
  python3 -m venv "$moto_venv"
  "$moto_venv/bin/pip" install -q "moto[server,ec2,autoscaling,cloudformation,iam,cloudwatch]==5.2.5" "cfn-lint==1.58.0"
fi
export NATBAKE_MOTO_VENV=$moto_venv

# Tests that need root must run, never skip, here.
export NATBAKE_REQUIRE_ROOT_TESTS=1
# A snapshot that differs fails; nothing is written for later review.
export INSTA_UPDATE=no

cargo fmt --check
cargo clippy --locked --all-targets -- -D warnings
cargo test --locked --all-targets
