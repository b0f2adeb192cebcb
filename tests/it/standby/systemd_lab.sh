#!/bin/bash
# The standby lab's stand-in for systemd inside one instance: the
# instance's units run as installed, from the rendered unit files and
# drop-ins under /etc/systemd/system and the distribution's own units
# under /lib/systemd/system (keepalived's and conntrackd's, from Debian's
# packages), merged as systemd merges them (a drop-in's empty `ExecStart=`
# clears the list). Run by installed_run.sh in the instance's own network
# and mount namespaces; never on the host.
#
#   lab-systemd boot UNIT...
#                         the boot: binds itself over systemctl, starts
#                         the enabled units given (services in the order
#                         their After= lines ask, timers running their
#                         Unit= every OnUnitInactiveSec); stays until
#                         TERM, then stops the services in reverse order
#                         (a clean shutdown)
#   systemctl VERB UNIT   start, stop, restart, try-restart, reload,
#                         try-reload-or-restart, is-active [--quiet],
#                         daemon-reload and enable (no-ops)
#
# What it keeps of systemd's semantics: Type=oneshot runs to the end
# (RemainAfterExit keeps it active), other types run in the background
# with their main pid ($MAINPID); Requires= starts the required unit and
# fails when it fails, Requisite= fails unless the unit is active; ConditionFileNotEmpty= skips the start quietly;
# Restart=on-failure with RestartSec=; ExecStop= and ExecReload=; a `-`
# before a command ignores its failure; EnvironmentFile= of NAME=VALUE
# lines; commands start without the caller's open files and environment.
# Every unit's output goes to $LAB_LOG with its name.
set -u
STATE=/run/lab-systemd
LAB_LOG=${LAB_LOG:-/run/natbake-lab/units.log}
UNIT_DIRS=(/etc/systemd/system /lib/systemd/system /usr/lib/systemd/system)
mkdir -p "$STATE"

function note { echo "$(date +%s.%N) lab-systemd[$$]: $*" >>"$LAB_LOG"; }

# The unit's files, in the order systemd reads them: the unit, then its
# drop-ins by name.
function unit_files {
  local u=$1 d f
  for d in "${UNIT_DIRS[@]}"; do
    [ -f "$d/$u" ] && { echo "$d/$u"; break; }
  done
  for d in "${UNIT_DIRS[@]}"; do
    for f in "$d/$u.d"/*.conf; do [ -f "$f" ] && echo "$f"; done
  done
}

# The values of KEY, one a line, an empty assignment clearing those before.
function values {
  local u=$1 key=$2 f line
  local -a out=()
  while read -r f; do
    while IFS= read -r line; do
      [[ $line =~ ^[[:space:]]*$key=(.*)$ ]] || continue
      if [ -z "${BASH_REMATCH[1]}" ]; then out=(); else out+=("${BASH_REMATCH[1]}"); fi
    done <"$f"
  done < <(unit_files "$u")
  [ "${#out[@]}" -eq 0 ] || printf '%s\n' "${out[@]}"
}

function value { values "$1" "$2" | tail -n 1; }

function exists { [ -n "$(unit_files "$1" | head -n 1)" ]; }

function is_active { [ "$(cat "$STATE/$1.state" 2>/dev/null)" = active ]; }

function set_state { echo "$2" >"$STATE/$1.state"; }

# Closes every open file but stdin, stdout and stderr (a lock the caller
# of systemctl holds, for one).
function close_fds {
  local fd
  for fd in /proc/self/fd/*; do
    fd=${fd##*/}
    [ "$fd" -gt 2 ] 2>/dev/null && eval "exec $fd>&-"
  done
  return 0
}

# Runs one command line of unit $1 ($2) in the foreground; `-` ignores failure.
function run_line {
  local u=$1 line=$2 ignore=0 word env_file k v
  local -a argv=()
  [[ $line == -* ]] && { ignore=1; line=${line#-}; }
  line=${line#@}
  line=${line#+}
  local -A env=([MAINPID]=$(cat "$STATE/$u.pid" 2>/dev/null || echo 0))
  while read -r env_file; do
    env_file=${env_file#-}
    [ -r "$env_file" ] || continue
    while IFS='=' read -r k v; do
      [[ $k =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] && env[$k]=${v//\"/}
    done <"$env_file"
  done < <(values "$u" EnvironmentFile)
  for word in $line; do
    if [[ $word =~ ^\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?$ ]]; then
      # shellcheck disable=SC2206 # systemd splits $VAR at white space
      argv+=(${env[${BASH_REMATCH[1]}]:-})
    else
      argv+=("$word")
    fi
  done
  note "$u: ${argv[*]}"
  # As systemd starts a unit's commands: from a clean slate, not from the
  # caller of systemctl (no open file of its, such as a lock, and none of
  # its environment).
  # A service's main process says its pid itself (MAIN_PID_FILE): exec
  # keeps it.
  (
    close_fds
    [ -z "${MAIN_PID_FILE:-}" ] || echo "$BASHPID" >"$MAIN_PID_FILE"
    exec env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "${argv[@]}"
  ) >>"$LAB_LOG" 2>&1
  local rc=$?
  [ "$rc" -eq 0 ] || note "$u: exit $rc"
  [ "$ignore" -eq 1 ] && return 0
  return "$rc"
}

function conditions_hold {
  local u=$1 path
  while read -r path; do
    [ -s "$path" ] || { note "$u: condition failed: $path is empty or missing"; return 1; }
  done < <(values "$u" ConditionFileNotEmpty)
}

function start {
  local u=$1 req type line
  exists "$u" || { echo "Unit $u not found." >&2; return 5; }
  is_active "$u" && return 0
  while read -r req; do
    for r in $req; do start "$r" || { note "$u: required $r failed"; set_state "$u" failed; return 1; }; done
  done < <(values "$u" Requires)
  while read -r req; do
    for r in $req; do is_active "$r" || { note "$u: requisite $r is not active"; return 1; }; done
  done < <(values "$u" Requisite)
  conditions_hold "$u" || return 0
  type=$(value "$u" Type)
  if [ "$type" = oneshot ]; then
    set_state "$u" activating
    while IFS= read -r line; do
      run_line "$u" "$line" || { set_state "$u" failed; return 1; }
    done < <(values "$u" ExecStart)
    if [ "$(value "$u" RemainAfterExit)" = yes ]; then set_state "$u" active; else set_state "$u" inactive; fi
    return 0
  fi
  line=$(value "$u" ExecStart)
  set_state "$u" active
  rm -f "$STATE/$u.stopping"
  # The service lives on after systemctl returns: nothing of the caller's
  # (its open files, its output) goes with it.
  (close_fds; supervise "$u" "$line") </dev/null >>"$LAB_LOG" 2>&1 &
  echo $! >"$STATE/$u.supervisor"
  # The main pid is known once the first run started.
  local i=0
  until [ -s "$STATE/$u.pid" ] || [ "$i" -ge 500 ]; do sleep 0.01; i=$((i + 1)); done
}

# A service's main process, started again after a failure when its unit says so.
function supervise {
  local u=$1 line=$2 rc restart delay
  restart=$(value "$u" Restart)
  delay=$(value "$u" RestartSec)
  while :; do
    # The main process gets the commands' own arguments, not a shell, and
    # writes its pid before it becomes the command. (Not a child of
    # run_line found by its parent: run_line has other children a moment,
    # and a stop that signals one of them leaves the service running.)
    rm -f "$STATE/$u.pid"
    MAIN_PID_FILE=$STATE/$u.pid run_line "$u" "$line" &
    local child=$!
    wait "$child"
    rc=$?
    [ -e "$STATE/$u.stopping" ] && break
    if [ "$rc" -ne 0 ] && [ "$restart" = on-failure ] || [ "$restart" = always ]; then
      note "$u: restarting in ${delay:-0.1}s"
      sleep "${delay:-0.1}"
      continue
    fi
    break
  done
  [ -e "$STATE/$u.stopping" ] || set_state "$u" "$([ "$rc" -eq 0 ] && echo inactive || echo failed)"
}

function stop {
  local u=$1 line pid i
  is_active "$u" || { [ "$(cat "$STATE/$u.state" 2>/dev/null)" = failed ] && set_state "$u" inactive; return 0; }
  touch "$STATE/$u.stopping"
  while IFS= read -r line; do run_line "$u" "$line"; done < <(values "$u" ExecStop)
  pid=$(cat "$STATE/$u.pid" 2>/dev/null || true)
  if [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null; then
    i=0
    while kill -0 "$pid" 2>/dev/null && [ "$i" -lt 200 ]; do sleep 0.05; i=$((i + 1)); done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  pid=$(cat "$STATE/$u.supervisor" 2>/dev/null || true)
  [ -z "$pid" ] || { i=0; while kill -0 "$pid" 2>/dev/null && [ "$i" -lt 100 ]; do sleep 0.02; i=$((i + 1)); done; }
  rm -f "$STATE/$u.pid" "$STATE/$u.supervisor"
  set_state "$u" inactive
}

function reload {
  local u=$1 line n=0
  while IFS= read -r line; do run_line "$u" "$line" || return 1; n=1; done < <(values "$u" ExecReload)
  [ "$n" -eq 1 ] || { echo "Job type reload is not applicable for unit $u." >&2; return 1; }
}

# The units given, services in the order their After= lines ask (a unit
# comes after those of the given ones it names), then the timers.
function boot_order {
  local -a left=("$@") next=() done_=()
  local u dep ready progress
  while [ "${#left[@]}" -gt 0 ]; do
    next=() progress=0
    for u in "${left[@]}"; do
      ready=1
      for dep in $(values "$u" After); do
        [[ " ${left[*]} " == *" $dep "* && $dep != "$u" ]] && ready=0
      done
      if [ "$ready" -eq 1 ]; then done_+=("$u"); progress=1; else next+=("$u"); fi
    done
    # A cycle: the rest in the order given.
    [ "$progress" -eq 1 ] || { done_+=("${next[@]}"); next=(); }
    left=("${next[@]}")
  done
  printf '%s\n' "${done_[@]}"
}

function seconds { local v=${1%s}; [[ $v =~ ^[0-9]+$ ]] && echo "$v" || echo 15; }

function timer {
  local t=$1 service first every
  service=$(value "$t" Unit)
  service=${service:-${t%.timer}.service}
  first=$(seconds "$(value "$t" OnBootSec)")
  every=$(seconds "$(value "$t" OnUnitInactiveSec)")
  sleep "$first"
  while :; do
    start "$service"
    sleep "$every"
  done
}

function boot {
  local u t
  local -a started=() timers=()
  mkdir -p /run/systemd/system "${LAB_LOG%/*}"
  mount --bind "$0" /usr/bin/systemctl || { note "cannot bind over systemctl"; exit 1; }
  note "boot: $*"
  echo "$$" >"${LAB_LOG%/*}/init.pid"
  while read -r u; do
    case $u in
    *.timer) timer "$u" & timers+=($!) ;;
    *) start "$u"; started+=("$u") ;;
    esac
  done < <(boot_order "$@")
  note "booted: $(for u in "${started[@]}"; do printf '%s=%s ' "$u" "$(cat "$STATE/$u.state" 2>/dev/null)"; done)"
  # A clean shutdown: the timers first, then the units in reverse order.
  trap 'note shutdown; kill "${timers[@]}" 2>/dev/null; for ((i = ${#started[@]} - 1; i >= 0; i--)); do stop "${started[i]}"; done; note halted; exit 0' TERM
  while :; do sleep 1 & wait $!; done
}

case ${1:-} in
boot) shift; boot "$@" ;;
start | stop | reload) "$1" "$2" ;;
restart) stop "$2" && start "$2" ;;
try-restart) if is_active "$2"; then stop "$2" && start "$2"; fi ;;
try-reload-or-restart | reload-or-restart)
  if [ "$1" = reload-or-restart ] || is_active "$2"; then
    if [ -n "$(values "$2" ExecReload)" ] && is_active "$2"; then reload "$2"; else stop "$2" && start "$2"; fi
  fi
  ;;
is-active)
  [ "${2:-}" = --quiet ] && shift
  if is_active "$2"; then echo active; else echo inactive; exit 3; fi >/dev/null
  ;;
daemon-reload | enable | disable) ;;
*)
  echo "lab-systemd: not supported: $*" >&2
  exit 1
  ;;
esac
