#!/bin/sh
# Runs a shell command in a chroot of a test image, the way a provisioner's
# shell runs it. Run by boot.rs's `in_chroot` inside
# `unshare --mount --net --pid`, so every mount here vanishes with it and
# the network is an empty namespace of its own.
# Arguments: the image's root, the command.
set -eu
root=$1
script=$2
mount -t proc proc "$root/proc"
mount --bind "$root/proc/sys" "$root/proc/sys"
mount -o remount,bind,ro "$root/proc/sys"
# The reader's network namespace decides what /proc/sys/net shows: here
# the new, empty one.
mount --bind /proc/sys/net "$root/proc/sys/net"
# An empty /run, as before boot: provision.sh looks at /run/systemd/system
# to tell a running system from an image.
mount -t tmpfs -o mode=0755 tmpfs "$root/run"
exec chroot "$root" /bin/sh -c "$script"
