# natbake-aws.sh as natbake-standby's tests load it: the site's own,
# running the stand-in program standby_aws.sh.
# shellcheck shell=bash disable=SC2034
# shellcheck source=/dev/null
. "$SITE_DIR/natbake-aws.sh" || return 1
AWS_PROGRAM=$HELPERS/standby_aws.sh
AWS_ENV_FILE=$SCRATCH/aws.env
