#!/bin/bash
# natbake-aws.sh: the AWS side of natbake's scripts on the instance.
# Comments: natbake's instance/ folder, or `natbake templates dump DIR`.
#
# The same for every site. Installed as /usr/local/lib/natbake/natbake-aws.sh
# on sites with failover or metrics, and sourced (not run) by
# configure-pat.sh and natbake-health, after natbake-lib.sh (whose log it
# uses).
#
# Every call to instance metadata and the AWS APIs goes through one
# program, /usr/local/lib/natbake/natbake-aws (Python 3, standard library
# only): IMDSv2, the role's credentials, SigV4, retries, answers read with
# an XML parser.
# This file runs it with the seconds left before AWS_DEADLINE (a value of
# $SECONDS, which the caller sets) and reads its NAME=VALUE lines into
# variables; nothing it prints is evaluated.
#
# A function returns 0 for success, 1 for a definite refusal (AWS_ERROR
# holds the error code and AWS_MESSAGE the message), 2 when no answer came
# before AWS_DEADLINE.

AWS_PROGRAM=/usr/local/lib/natbake/natbake-aws
AWS_ENV_FILE=/etc/natbake/aws.env
AWS_DEADLINE=${AWS_DEADLINE:-$(( SECONDS + 30 ))}
AWS_ERROR='' AWS_MESSAGE=''
declare -gA AWS_OUT=()

# The program's output is data: NAME=VALUE lines, the value on one line of
# printable characters, checked by the program where a caller relies on its
# form. warning= lines go to the log as they are; error= and message= end
# a failure. A status past 2 (a crash, a usage error) is a refusal.
# Runs the program: aws_run COMMAND [ARGS]... (stdin passes through); its
# values into AWS_OUT, warnings to the log; returns its status (0, 1, 2).
function aws_run {
  local out line rc left=$(( AWS_DEADLINE - SECONDS ))
  AWS_ERROR='' AWS_MESSAGE='' AWS_OUT=()
  if [ "$left" -le 0 ]; then
    AWS_ERROR=natbake.NoAnswer AWS_MESSAGE="no time left for $1"
    return 2
  fi
  out=$("$AWS_PROGRAM" --deadline "$left" --env-file "$AWS_ENV_FILE" "$@")
  rc=$?
  while IFS= read -r line; do
    case $line in
      warning=*) log "WARNING: ${line#warning=}" ;;
      error=*) AWS_ERROR=${line#error=} ;;
      message=*) AWS_MESSAGE=${line#message=} ;;
      ?*=*) AWS_OUT[${line%%=*}]=${line#*=} ;;
    esac
  done <<<"$out"
  case $rc in
    0 | 1 | 2) return "$rc" ;;
    *) AWS_MESSAGE="$AWS_PROGRAM $1 failed (exit $rc)${AWS_MESSAGE:+: $AWS_MESSAGE}"
       AWS_ERROR=${AWS_ERROR:-natbake.Failed}
       return 1 ;;
  esac
}

# Checks /etc/natbake/aws.env (the program parses it, never sourced) and
# sets NATBAKE_FLOATING_CONFIG from it, unless the environment has it.
function aws_read_env_file {
  aws_run config || return 1
  NATBAKE_FLOATING_CONFIG=${AWS_OUT[NATBAKE_FLOATING_CONFIG]:-}
}

# One metadata value (PATH under /latest/) into AWS_BODY, one line each;
# aws_imds_lagging also waits out a 404 (a new interface's metadata).
# shellcheck disable=SC2034 # its callers read AWS_BODY
function aws_imds {
  AWS_BODY=''
  aws_run imds "$@" || return
  AWS_BODY=${AWS_OUT[value]:-}
}
function aws_imds_lagging { aws_imds --lag "$1"; }
