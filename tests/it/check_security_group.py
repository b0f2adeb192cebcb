"""Checks security-group.json files the way the AWS CLI would read them.

botocore's parameter validator is what `aws ec2
authorize-security-group-ingress --ip-permissions file://...` runs before
sending anything; it works offline from the EC2 service model. AWS also
limits the characters of rule descriptions, which is checked here too.
Usage: python3 check_security_group.py FILE...
"""
import json
import re
import sys

import botocore.session
from botocore.validate import ParamValidator

DESCRIPTION = re.compile(r"^[a-zA-Z0-9. _\-:/()#,@\[\]+=&;{}!$*]{0,255}$")

operation = botocore.session.get_session().get_service_model("ec2").operation_model(
    "AuthorizeSecurityGroupIngress"
)
failed = False
for path in sys.argv[1:]:
    with open(path, encoding="utf-8") as f:
        permissions = json.load(f)
    report = ParamValidator().validate(
        {"GroupId": "sg-0123456789abcdef0", "IpPermissions": permissions},
        operation.input_shape,
    )
    if report.has_errors():
        print(f"{path}: {report.generate_report()}")
        failed = True
    for p in permissions:
        for r in p.get("IpRanges", []):
            if not DESCRIPTION.match(r.get("Description", "")):
                print(f"{path}: AWS refuses the description {r['Description']!r}")
                failed = True
sys.exit(1 if failed else 0)
