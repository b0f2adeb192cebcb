# natbake-failover.sh as natbake-standby's tests load it: the site's own,
# with the steps that need root or a real device (finding the device by
# its MAC in sysfs, udev, configuring it) looking at the scratch sysfs or
# recording what they would do; the waits take no time.
# shellcheck shell=bash disable=SC2034
# shellcheck source=/dev/null
. "$SITE_DIR/natbake-failover.sh" || return 1
function device_of_mac {
  local f
  for f in "$NET_DEVICES"/*/address; do
    [ "$(cat "$f" 2>/dev/null)" = "$1" ] && { f=${f%/address}; echo "${f##*/}"; return 0; }
  done
  return 1
}
function udev_settle { :; }
function floating_device { FLOATING_DEV=$(device_of_mac "$1"); }
# Records the call; the route the test says it makes ($STUB_DIR/route-after)
# becomes what `ip route get` answers.
function configure_floating {
  echo "host configure_floating $*" >>"$STUB_DIR/calls"
  FLOATING_DEV=$(device_of_mac "$2")
  [ ! -e "$STUB_DIR/route-after" ] || cp "$STUB_DIR/route-after" "$STUB_DIR/host/ip -4 -o route get 198.51.100.1"
}
# A wait takes no time; its length is recorded.
function sleep { echo "host sleep $*" >>"$STUB_DIR/calls"; }
