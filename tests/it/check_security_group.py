"""Checks a site folder's security-group rules the way EC2 would read them.

botocore's parameter validator is what `aws ec2
authorize-security-group-ingress --ip-permissions file://...` (and
`authorize-security-group-egress`) runs before sending anything; it works
offline from the EC2 service model. EC2 itself also refuses an empty list
of permissions, the same rule twice in one request, and description
characters outside its set; those are checked here too.
Checked: security-group.json and target-security-groups.json (when
rendered), and in manifest.json each target's `security_group_ingress`
and the NAT group's `egress`.
Usage: python3 check_security_group.py SITE_DIR...
"""
import json
import os
import re
import sys

import botocore.session
from botocore.validate import ParamValidator

DESCRIPTION = re.compile(r"^[a-zA-Z0-9. _\-:/()#,@\[\]+=&;{}!$*]{0,255}$")

model = botocore.session.get_session().get_service_model("ec2")
INGRESS = model.operation_model("AuthorizeSecurityGroupIngress").input_shape
EGRESS = model.operation_model("AuthorizeSecurityGroupEgress").input_shape


def problems(permissions, shape):
    """Every reason EC2 would refuse these permissions in one request."""
    found = []
    if not permissions:
        found.append("an empty list: EC2 refuses a request without permissions")
    params = {"GroupId": "sg-0123456789abcdef0", "IpPermissions": permissions}
    report = ParamValidator().validate(params, shape)
    if report.has_errors():
        found.append(report.generate_report())
        return found
    seen = set()
    for p in permissions:
        for r in p.get("IpRanges", []):
            rule = (p["IpProtocol"], p.get("FromPort"), p.get("ToPort"), r["CidrIp"])
            if rule in seen:
                found.append(f"the rule {rule} appears twice")
            seen.add(rule)
            if not DESCRIPTION.match(r.get("Description", "")):
                found.append(f"AWS refuses the description {r['Description']!r}")
    return found


failed = False
for site in sys.argv[1:]:
    checks = []
    for name in ["security-group.json", "target-security-groups.json"]:
        path = os.path.join(site, name)
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                checks.append((path, json.load(f), INGRESS))
    with open(os.path.join(site, "manifest.json"), encoding="utf-8") as f:
        manifest = json.load(f)
    for t in manifest["targets"]:
        checks.append((f"{site}: targets {t['address']}", t["security_group_ingress"], INGRESS))
    egress = manifest["security_groups"]["nat"]["egress"]
    # Empty when the NAT sends nothing on its own behalf (no forwards, no egress).
    if egress or manifest["forwards"] or manifest["egress"]:
        checks.append((f"{site}: security_groups.nat.egress", egress, EGRESS))
    for where, permissions, shape in checks:
        for problem in problems(permissions, shape):
            print(f"{where}: {problem}")
            failed = True
sys.exit(1 if failed else 0)
