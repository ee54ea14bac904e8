#!/usr/bin/env python3
"""Memory per idle keep-alive connection: open N client connections to a
proxy, send one request on each (so every connection is fully set up on
both sides), keep them open, and report the proxy's RSS growth per
connection (VmRSS of the given pids, summed) together with the kernel's
TCP memory growth (pages in /proc/net/sockstat).

usage: idle_memory.py HOST:PORT N PID [PID...]   (IDLE_WAIT=seconds, default 3)
"""
import os
import socket
import sys
import time


def rss_kib(pids):
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


def tcp_pages():
    with open("/proc/net/sockstat") as f:
        for line in f:
            if line.startswith("TCP:"):
                parts = line.split()
                return int(parts[parts.index("mem") + 1])
    return 0


def main():
    host, port = sys.argv[1].rsplit(":", 1)
    n = int(sys.argv[2])
    pids = sys.argv[3:]
    request = f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    # Warm the proxy (pools, buffers) with a few connections first.
    warm = []
    for _ in range(16):
        s = socket.create_connection((host, int(port)))
        s.sendall(request)
        s.recv(65536)
        warm.append(s)
    time.sleep(0.5)
    rss0, tcp0 = rss_kib(pids), tcp_pages()
    conns = []
    for i in range(n):
        s = socket.create_connection((host, int(port)))
        s.sendall(request)
        conns.append(s)
    for s in conns:
        s.settimeout(10)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                raise SystemExit("proxy closed a connection")
            data += chunk
    # "Idle" means idle for a while: DAO parks connections after 1 s.
    time.sleep(float(os.environ.get("IDLE_WAIT", "3")))
    rss1, tcp1 = rss_kib(pids), tcp_pages()
    print(f"{n} idle connections: RSS +{rss1 - rss0} KiB "
          f"({(rss1 - rss0) * 1024 / n:.0f} B/conn), "
          f"kernel TCP +{(tcp1 - tcp0) * 4} KiB (both sides of loopback)")
    for s in conns + warm:
        s.close()


if __name__ == "__main__":
    main()
