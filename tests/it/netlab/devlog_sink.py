"""A syslog receiver: binds a datagram socket at argv[1] (which the lab
mounts on /dev/log for configure-pat.sh) and appends every message to
argv[2], one per line."""
import socket
import sys

s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
out = open(sys.argv[2], 'ab', 0)
while True:
    out.write(s.recv(65536).rstrip(b'\n') + b'\n')
