# natbake-lib.sh as natbake-standby's tests load it (SITE_LIB): the
# site's own, its files at the scratch ones, the AWS client and the
# floating interface's steps at the wrappers beside this file.
# shellcheck shell=bash disable=SC2034
# shellcheck source=/dev/null
. "$SITE_DIR/natbake-lib.sh" || return 1
unit_relocate
AWS_LIB=$HELPERS/standby_awslib.sh
FAILOVER_LIB=$HELPERS/standby_failover.sh
