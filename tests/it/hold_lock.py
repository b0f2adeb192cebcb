"""Holds a write lock on a file the way dpkg and apt lock theirs (fcntl),
prints `locked`, and lets go after the given number of seconds or when
killed. Used to play another package manager holding the dpkg lock."""

import fcntl
import sys
import time

path, seconds = sys.argv[1], float(sys.argv[2])
with open(path, "a") as f:
    fcntl.lockf(f, fcntl.LOCK_EX)
    print("locked", flush=True)
    time.sleep(seconds)
