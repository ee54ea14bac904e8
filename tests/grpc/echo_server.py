"""A real gRPC server (grpcio) for DAO's tests: raw-bytes methods, no
protobuf. Prints its port on the first line, then serves until its
standard input closes (the test process ended).

Methods of service dao.test.Echo:
  Unary    request bytes -> b"echo:" + request, trailing metadata x-trailer
  Count    request b"N" -> N messages b"msg-i"; after the first it waits
           for Release (up to 10 s)
  Release  lets Count go on
  Fail     fails with NOT_FOUND "no such thing"
  Sleep    answers after 2 s, or DEADLINE_EXCEEDED past the call's deadline
"""
import sys
import threading
import time
from concurrent import futures

import grpc

released = threading.Event()


def unary(request, context):
    context.set_trailing_metadata((("x-trailer", "t"),))
    return b"echo:" + request


def count(request, context):
    for i in range(int(request)):
        yield b"msg-%d" % i
        if i == 0:
            released.wait(10)


def release(request, context):
    released.set()
    return b"released"


def fail(request, context):
    context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")


def sleep(request, context):
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        if not context.is_active():
            return b""
        time.sleep(0.01)
    return b"slept"


def main():
    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "Count": grpc.unary_stream_rpc_method_handler(count),
        "Release": grpc.unary_unary_rpc_method_handler(release),
        "Fail": grpc.unary_unary_rpc_method_handler(fail),
        "Sleep": grpc.unary_unary_rpc_method_handler(sleep),
    }
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("dao.test.Echo", handlers),)
    )
    if len(sys.argv) == 4 and sys.argv[1] == "--tls":
        # --tls CERT KEY: gRPC over TLS (HTTP/2 chosen by ALPN).
        with open(sys.argv[2], "rb") as f:
            cert = f.read()
        with open(sys.argv[3], "rb") as f:
            key = f.read()
        creds = grpc.ssl_server_credentials([(key, cert)])
        port = server.add_secure_port("127.0.0.1:0", creds)
    else:
        port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    sys.stdin.read()
    server.stop(0)


if __name__ == "__main__":
    main()
