#!/bin/sh
# Starts systemd-nspawn with the arguments given, from boot.rs's
# `Guest::start`, inside `unshare --mount`: a tmpfs on /run/systemd, where
# nspawn keeps its state (the host's /run is no tmpfs and its PID 1 no
# systemd), then nspawn, which gets SIGTERM should the test process die.
# Every exec keeps the pid, so the child the test holds is systemd-nspawn
# itself.
set -eu
mount -t tmpfs -o mode=0755 tmpfs /run/systemd
exec setpriv --pdeathsig TERM -- systemd-nspawn "$@"
