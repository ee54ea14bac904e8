"""A gRPC server (grpcio) answering the standard health checking protocol,
grpc.health.v1.Health/Check, for DAO's tests: raw bytes, no protobuf
package needed. Prints its port on the first line; then each line read
from standard input sets the status of the service named on it
("<service> <status>", status one of SERVING, NOT_SERVING, or GONE to
forget the service) and is acknowledged with a line "ok"; it stops when
its standard input closes.

The service "" (the server as a whole) starts SERVING. Check of a service
never set fails with NOT_FOUND, as grpcio-health-checking's servicer does.
"""
import sys
import threading
from concurrent import futures

import grpc

STATUS = {"SERVING": 1, "NOT_SERVING": 2}
lock = threading.Lock()
services = {"": 1}


def service_name(request):
    """Field 1 (string) of a HealthCheckRequest; "" when absent."""
    name, i = b"", 0
    while i < len(request):
        key, i = varint(request, i)
        if key & 7 == 2:
            n, i = varint(request, i)
            if key >> 3 == 1:
                name = request[i : i + n]
            i += n
        elif key & 7 == 0:
            _, i = varint(request, i)
        else:
            raise ValueError("unexpected wire type")
    return name.decode()


def varint(data, i):
    value, shift = 0, 0
    while True:
        b = data[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, i


def check(request, context):
    name = service_name(request)
    with lock:
        status = services.get(name)
    if status is None:
        context.abort(grpc.StatusCode.NOT_FOUND, "unknown service")
    return bytes([0x08, status])


def main():
    handlers = {"Check": grpc.unary_unary_rpc_method_handler(check)}
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("grpc.health.v1.Health", handlers),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    for line in sys.stdin:
        name, _, status = line.strip().rpartition(" ")
        with lock:
            if status == "GONE":
                services.pop(name, None)
            else:
                services[name] = STATUS[status]
        print("ok", flush=True)
    server.stop(0)


if __name__ == "__main__":
    main()
