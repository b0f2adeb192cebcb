"""Reads rendered user data the way cloud-init does, many sites per run.

cloud-init loads `#cloud-config` with PyYAML's pure-Python SafeLoader (a
subclass of it), which refuses characters outside YAML's printable set and
reads NEL and the Unicode line separators as line breaks. Any error there
makes cloud-init ignore the whole user data. For each site folder this
loads user-data.yaml (or user-data.yaml.gz) that way and checks that every
file it writes is byte for byte the standalone artifact that manifest.json
names for that install path.
Usage: python3 check_user_data.py SITE_DIR...
"""
import base64
import gzip
import json
import os
import sys

import yaml

failed = 0
checked = 0
for site in sys.argv[1:]:
    plain = os.path.join(site, "user-data.yaml")
    packed = plain + ".gz"
    if os.path.exists(plain):
        with open(plain, "rb") as f:
            raw = f.read()
    elif os.path.exists(packed):
        with gzip.open(packed, "rb") as f:
            raw = f.read()
    else:
        continue
    checked += 1
    try:
        config = yaml.load(raw.decode("utf-8"), Loader=yaml.SafeLoader)
    except Exception as e:  # any failure is what cloud-init would hit
        print(f"{site}: user data is not YAML cloud-init can read: {e}")
        failed += 1
        continue
    with open(os.path.join(site, "manifest.json"), encoding="utf-8") as f:
        manifest = json.load(f)
    by_install = {
        a["install_path"]: a["path"] for a in manifest["artifacts"] if a.get("install_path")
    }
    written = config.get("write_files", []) if isinstance(config, dict) else []
    if sorted(w.get("path") for w in written) != sorted(by_install):
        print(f"{site}: user data writes {[w.get('path') for w in written]}, expected {sorted(by_install)}")
        failed += 1
        continue
    for w in written:
        content = w["content"]
        encoding = w.get("encoding")
        if encoding == "b64":
            got = base64.b64decode(content)
        elif encoding == "gz+b64":
            got = gzip.decompress(base64.b64decode(content))
        else:
            got = content.encode("utf-8")
        with open(os.path.join(site, by_install[w["path"]]), "rb") as f:
            want = f.read()
        if got != want:
            print(f"{site}: {w['path']} in the user data differs from {by_install[w['path']]}")
            failed += 1
print(f"checked {checked} user data files, {failed} problems")
sys.exit(1 if failed else 0)
