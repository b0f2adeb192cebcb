"""Traffic for the standby lab.

  flows.py server PORT
      a TCP server (one thread per connection): it echoes what it reads,
      or, when a connection's first line is "push", sends a numbered line
      every 50 ms until the connection ends.
  flows.py hold ADDR PORT N SECONDS OUT [push]
      opens N connections, then sends one numbered line on each every
      50 ms and reads its echo, for SECONDS; with `push`, asks the server
      to push instead and only reads (so that after a takeover the first
      packet comes from the far side). Writes to OUT, as JSON, for each
      connection whether it lived to the end (no reset, nothing missing,
      no wait of PATIENCE seconds or more) and its longest wait.
  flows.py probe ADDR PORT OUT
      tries a new connection (and one echo) every 50 ms until one works;
      writes the time it worked (seconds since the epoch) to OUT.
  flows.py udpserver ADDR PORT
      a UDP server on ADDR (so that its answers leave from the address
      the forward targets) that sends every datagram back where it came
      from.
  flows.py udphold ADDR PORT N SECONDS OUT
      N UDP flows (each from its own socket), each sending a numbered
      datagram every 50 ms and reading the echoes, for SECONDS; writes to
      OUT, for each flow, whether it lived to the end (echoes came back
      after its longest gap, the gap shorter than PATIENCE, none from a wrong
      address or out of order) and its longest gap.

`hold` and `udphold` also end, early, once the file OUT.stop exists (a
scenario that lasts longer than planned says when it is over).

PATIENCE is 30 s: a TCP connection whose path is gone retransmits after
about 0.2, then 0.4, 0.8 ... 6.4, 12.8 s (the timeout doubling), so a
takeover of a few seconds can leave it waiting twice as long before its
next try gets through; a gap of 30 s is one that TCP's retransmission no
longer explains.
"""
import json
import os
import socket
import sys
import threading
import time

PATIENCE = 30.0


def server(port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.listen(256)

    def echo(c):
        with c:
            first = b""
            while not first.endswith(b"\n"):
                data = c.recv(4096)
                if not data:
                    return
                first += data
            if first == b"push\n":
                k = 0
                try:
                    while True:
                        c.sendall(f"{k}\n".encode())
                        k += 1
                        time.sleep(0.05)
                except OSError:
                    return
            c.sendall(first)
            while True:
                data = c.recv(4096)
                if not data:
                    return
                c.sendall(data)

    while True:
        c, _ = s.accept()
        threading.Thread(target=echo, args=(c,), daemon=True).start()


def pushed(i, c, stop, result):
    c.sendall(b"push\n")
    buf = b""
    k = 0
    last = time.time()
    while not stop.passed():
        try:
            data = c.recv(4096)
            if not data:
                raise ConnectionError("closed by the far end")
        except Exception as e:
            result["alive"] = False
            result["error"] = repr(e)
            return
        now = time.time()
        result["longest_wait"] = max(result["longest_wait"], now - last)
        last = now
        buf += data
        *lines, buf = buf.split(b"\n")
        for line in lines:
            if line != str(k).encode():
                result["alive"] = False
                result["error"] = f"line {line!r}, expected {k}"
                return
            k += 1


class Deadline:
    """SECONDS from now, or earlier once OUT.stop exists."""

    def __init__(self, seconds, out):
        self.end = time.time() + seconds
        self.stop_file = out + ".stop"

    def passed(self):
        return time.time() >= self.end or os.path.exists(self.stop_file)


def hold(addr, port, n, seconds, out, push=False):
    conns = []
    for _ in range(n):
        c = socket.create_connection((addr, port), timeout=5)
        c.settimeout(PATIENCE)
        conns.append(c)
    results = [{"alive": True, "longest_wait": 0.0, "error": None} for _ in conns]
    stop = Deadline(seconds, out)

    def run(i, c):
        if push:
            pushed(i, c, stop, results[i])
            return
        k = 0
        buf = b""
        while not stop.passed():
            line = f"{i}:{k}\n".encode()
            sent = time.time()
            try:
                c.sendall(line)
                while not buf.endswith(b"\n"):
                    data = c.recv(4096)
                    if not data:
                        raise ConnectionError("closed by the far end")
                    buf += data
            except Exception as e:  # a reset, a timeout: the connection is lost
                results[i]["alive"] = False
                results[i]["error"] = repr(e)
                return
            if buf != line:
                results[i]["alive"] = False
                results[i]["error"] = f"echo {buf!r} for {line!r}"
                return
            buf = b""
            results[i]["longest_wait"] = max(results[i]["longest_wait"], time.time() - sent)
            k += 1
            time.sleep(0.05)

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with open(out, "w") as f:
        json.dump(results, f)


def probe(addr, port, out):
    while True:
        try:
            c = socket.create_connection((addr, port), timeout=0.3)
            c.settimeout(0.5)
            c.sendall(b"probe\n")
            if c.recv(64) == b"probe\n":
                worked = time.time()
                c.close()
                break
            c.close()
        except OSError:
            pass
        time.sleep(0.05)
    with open(out, "w") as f:
        f.write(f"{worked:.3f}\n")


def udpserver(addr, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((addr, port))
    while True:
        data, peer = s.recvfrom(2048)
        s.sendto(data, peer)


def udphold(addr, port, n, seconds, out):
    stop = Deadline(seconds, out)
    results = [{"alive": True, "longest_wait": 0.0, "error": None} for _ in range(n)]

    def run(i):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.connect((addr, port))  # only the far end's answers come in
        s.settimeout(0.05)
        k = 0
        last_answer = time.time()
        seen = -1
        while not stop.passed():
            try:
                s.send(f"{i}:{k}".encode())
            except OSError as e:  # an ICMP error from an earlier datagram
                results[i]["error"] = repr(e)
            k += 1
            until = time.time() + 0.05
            while time.time() < until:
                try:
                    data = s.recv(2048)
                except socket.timeout:
                    break
                except OSError as e:
                    results[i]["error"] = repr(e)
                    break
                j, _, m = data.decode(errors="replace").partition(":")
                if j != str(i) or not m.isdigit() or int(m) <= seen:
                    results[i]["alive"] = False
                    results[i]["error"] = f"answer {data!r} after {seen}"
                    return
                seen = int(m)
                now = time.time()
                results[i]["longest_wait"] = max(results[i]["longest_wait"], now - last_answer)
                last_answer = now
        gap = time.time() - last_answer
        results[i]["longest_wait"] = max(results[i]["longest_wait"], gap)
        if results[i]["longest_wait"] >= PATIENCE or gap > 1:
            results[i]["alive"] = False
            results[i]["error"] = results[i]["error"] or f"no answer for the last {gap:.1f} s"
        elif results[i]["alive"]:
            results[i]["error"] = None

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with open(out, "w") as f:
        json.dump(results, f)


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "server":
        server(int(sys.argv[2]))
    elif mode == "hold":
        push = sys.argv[7:] == ["push"]
        hold(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), sys.argv[6], push)
    elif mode == "probe":
        probe(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    elif mode == "udpserver":
        udpserver(sys.argv[2], int(sys.argv[3]))
    elif mode == "udphold":
        udphold(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), sys.argv[6])
    else:
        sys.exit(f"unknown mode {mode}")
