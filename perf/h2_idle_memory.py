#!/usr/bin/env python3
"""Memory per idle HTTP/2 client connection: open N connections to a proxy
(h2c with prior knowledge, or h2 over TLS by ALPN), each set up in full
(the preface, SETTINGS both ways, each acknowledged) and, with --request,
one GET answered on it; keep them open and idle, and report the proxy's
RSS growth per connection (VmRSS of PID) and the kernel's TCP memory growth
(pages in /proc/net/sockstat, both sides of loopback).

usage: h2_idle_memory.py HOST:PORT N PID [--tls] [--request PATH]
       (IDLE_WAIT=seconds, default 3)
"""
import os
import socket
import ssl
import struct
import sys
import time

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, SETTINGS, PING, GOAWAY = 0, 1, 4, 6, 7
END_STREAM, ACK, END_HEADERS = 1, 1, 4


def frame(ty, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ty, flags]) + struct.pack(">I", stream) + payload


def request_block(tls, authority, path):
    """HPACK: GET and the scheme from the static table, the path and the
    authority as literals without indexing (names from the static table)."""
    out = bytearray([0x82, 0x87 if tls else 0x86])  # :method GET, :scheme
    for index, value in ((4, path), (1, authority)):  # :path, :authority
        v = value.encode()
        out += bytes([index, len(v)]) + v  # len < 127
    return bytes(out)


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def tcp_pages():
    with open("/proc/net/sockstat") as f:
        for line in f:
            if line.startswith("TCP:"):
                parts = line.split()
                return int(parts[parts.index("mem") + 1])
    return 0


class Conn:
    def __init__(self, addr, tls_ctx, request):
        s = socket.create_connection(addr)
        if tls_ctx:
            s = tls_ctx.wrap_socket(s, server_hostname="localhost")
            assert s.selected_alpn_protocol() == "h2", s.selected_alpn_protocol()
        self.s = s
        self.buf = b""
        s.sendall(PREFACE + frame(SETTINGS, 0, 0))
        settings = acked = False
        done = request is None
        while not (settings and acked and done):
            ty, flags, stream, payload = self.frame()
            if ty == SETTINGS and flags & ACK:
                acked = True
            elif ty == SETTINGS:
                settings = True
                out = frame(SETTINGS, ACK, 0)
                if request is not None:
                    block = request_block(tls_ctx is not None, "localhost", request)
                    out += frame(HEADERS, END_STREAM | END_HEADERS, 1, block)
                s.sendall(out)
            elif ty in (DATA, HEADERS) and stream == 1 and flags & END_STREAM:
                done = True
            elif ty == PING and not flags & ACK:
                s.sendall(frame(PING, ACK, 0, payload))
            elif ty == GOAWAY:
                raise SystemExit(f"GOAWAY from the proxy: {payload!r}")

    def frame(self):
        while True:
            if len(self.buf) >= 9:
                n = int.from_bytes(self.buf[:3], "big")
                if len(self.buf) >= 9 + n:
                    head, payload = self.buf[:9], self.buf[9:9 + n]
                    self.buf = self.buf[9 + n:]
                    stream = int.from_bytes(head[5:9], "big") & 0x7FFFFFFF
                    return head[3], head[4], stream, payload
            chunk = self.s.recv(65536)
            if not chunk:
                raise SystemExit("the proxy closed a connection")
            self.buf += chunk


def main():
    args = sys.argv[1:]
    tls = "--tls" in args
    request = None
    if "--request" in args:
        request = args[args.index("--request") + 1]
    host, port = args[0].rsplit(":", 1)
    addr = (host, int(port))
    n = int(args[1])
    pid = int(args[2])
    ctx = None
    if tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_alpn_protocols(["h2"])
    # Warm the proxy (pools, the runtime's first allocations) first.
    warm = [Conn(addr, ctx, request) for _ in range(16)]
    time.sleep(0.5)
    rss0, tcp0 = rss_kib(pid), tcp_pages()
    started = time.time()
    conns = [Conn(addr, ctx, request) for _ in range(n)]
    opened = time.time() - started
    time.sleep(float(os.environ.get("IDLE_WAIT", "3")))
    rss1, tcp1 = rss_kib(pid), tcp_pages()
    kind = "h2 over TLS" if tls else "h2c"
    what = f"one GET {request} each" if request else "no request"
    print(f"{n} idle {kind} connections ({what}; opened in {opened:.1f} s): "
          f"RSS +{rss1 - rss0} KiB ({(rss1 - rss0) * 1024 / n:.0f} B/conn), "
          f"kernel TCP +{(tcp1 - tcp0) * 4} KiB (both sides of loopback)")
    for c in conns + warm:
        c.s.close()


if __name__ == "__main__":
    main()
