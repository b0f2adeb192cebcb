"""Writes the content of each `write_files` entry of a #cloud-config
(argv[1], gzip-compressed whole if argv[3] is `gzip`) to argv[2]/<index>,
and prints `[{"path", "permissions", "file"}]` as JSON.

PyYAML, not natbake's YAML library: a second, independent reader."""
import base64, gzip, json, os, sys, yaml
src, out, packing = sys.argv[1], sys.argv[2], sys.argv[3]
data = open(src, "rb").read()
if packing == "gzip":
    data = gzip.decompress(data)
text = data.decode("utf-8")
if not text.startswith("#cloud-config\n"):
    sys.exit("%s does not start with #cloud-config" % src)
doc = yaml.safe_load(text)
result = []
for i, entry in enumerate(doc.get("write_files") or []):
    content = entry.get("content", "")
    encoding = str(entry.get("encoding", "")).lower()
    if encoding in ("b64", "base64"):
        raw = base64.b64decode(content)
    elif encoding in ("gz+b64", "gzip+b64", "gz+base64", "gzip+base64"):
        raw = gzip.decompress(base64.b64decode(content))
    elif encoding in ("", "text/plain"):
        raw = content.encode("utf-8")
    else:
        sys.exit("write_files[%d]: unsupported encoding %r" % (i, encoding))
    perms = entry.get("permissions", "0644")
    if not isinstance(perms, str):
        sys.exit("write_files[%d]: permissions must be a quoted string" % i)
    if entry.get("append"):
        sys.exit("write_files[%d]: append is not expected" % i)
    name = os.path.join(out, str(i))
    with open(name, "wb") as f:
        f.write(raw)
    result.append({"path": entry["path"], "permissions": perms, "file": name})
json.dump(result, sys.stdout)
