#!/usr/bin/env python3
"""Fills the conntrack table of the network namespace it runs in.

Sends one UDP datagram to each (address, port) pair, addresses from the
comma-separated first argument and ports from 1 up, until COUNT datagrams
are out: each is a new connection, so COUNT new conntrack entries (UDP,
unreplied). Run only inside a lab namespace, towards the lab's own hosts.
"""
import socket
import sys


def main() -> int:
    addresses = sys.argv[1].split(",")
    count = int(sys.argv[2])
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sent = 0
    for address in addresses:
        for port in range(1, 65536):
            if sent == count:
                break
            sock.sendto(b"x", (address, port))
            sent += 1
    print(sent)
    return 0 if sent == count else 1


if __name__ == "__main__":
    sys.exit(main())
