#!/bin/sh
# Runs a command in a private view of the file system, with files
# installed as on a NAT instance. Run inside `unshare -m` by the network
# lab (see run.rs); never on the host's own mount namespace.
# Arguments: stage directory (with install.list, an empty ovl/ and
# optionally keep.list), the
# lab's syslog socket, then the command to exec.
set -u
fail() { echo "natbake-lab setup: $*" >&2; exit 97; }
stage=$1 sink=$2
shift 2
mount -t tmpfs natbake-lab "$stage/ovl" || fail "tmpfs on $stage/ovl"
for dir in /etc /usr/local /var /run /dev; do
    name=$(echo "$dir" | tr / _)
    mkdir -p "$stage/ovl/$name.upper" "$stage/ovl/$name.work" || fail "mkdir for $dir"
    mount -t overlay natbake-lab \
        -o "lowerdir=$dir,upperdir=$stage/ovl/$name.upper,workdir=$stage/ovl/$name.work" "$dir" \
        || fail "overlay on $dir"
done
rm -f /dev/log && touch /dev/log && mount --bind "$sink" /dev/log || fail "/dev/log"
mount --bind /proc/sys /proc/sys \
    && mount --bind /proc/sys/net /proc/sys/net \
    && mount -o remount,bind,ro /proc/sys || fail "read-only /proc/sys"
while read -r mode src dst; do
    mkdir -p "${dst%/*}" && install -m "$mode" "$src" "$dst" || fail "install $dst"
done < "$stage/install.list"
# Folders that outlive this run (an instance's /run/natbake across checks).
if [ -f "$stage/keep.list" ]; then
    while read -r src dst; do
        mkdir -p "$dst" && mount --bind "$src" "$dst" || fail "bind $dst"
    done < "$stage/keep.list"
fi
exec env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"
