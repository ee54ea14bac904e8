"""A real gRPC client (grpcio, HTTP/2 with prior knowledge) for tests/grpc.rs.

Calls the echo server of echo_server.py through DAO at argv[1] and prints
one JSON object with what it saw: a unary call and its trailing metadata,
a server stream whose first message arrives before the server lets it go
on, a call that fails with NOT_FOUND, and a deadline that runs out.
"""
import json
import sys
import time

import grpc


def main():
    target = sys.argv[1]
    out = {}
    with grpc.insecure_channel(target) as ch:
        unary = ch.unary_unary("/dao.test.Echo/Unary")
        reply, call = unary.with_call(b"hi", timeout=10)
        out["unary"] = reply.decode()
        out["unary_trailer"] = dict(call.trailing_metadata()).get("x-trailer")

        # Count sends one message, then waits for Release: the first must
        # come through DAO while the stream is still open.
        stream = ch.unary_stream("/dao.test.Echo/Count")(b"3", timeout=10)
        first = next(stream).decode()
        ch.unary_unary("/dao.test.Echo/Release")(b"", timeout=10)
        out["stream"] = [first] + [m.decode() for m in stream]
        out["stream_code"] = stream.code().name

        try:
            ch.unary_unary("/dao.test.Echo/Fail")(b"", timeout=10)
            out["fail"] = "OK"
        except grpc.RpcError as e:
            out["fail"] = e.code().name

        started = time.monotonic()
        try:
            ch.unary_unary("/dao.test.Echo/Sleep")(b"", timeout=0.3)
            out["deadline"] = "OK"
        except grpc.RpcError as e:
            out["deadline"] = e.code().name
        out["deadline_s"] = time.monotonic() - started
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
