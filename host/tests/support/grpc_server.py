"""A gRPC server for the gRPC callout tests, on grpcio (gRPC's own C-core implementation from
PyPI), so barbacane's HTTP/2 framing, trailers and statuses are checked against an independent
implementation. Messages are raw bytes (no protobuf schema needed: the host never decodes them).

Prints the port it listens on (127.0.0.1, ephemeral), then one line per event it sees. With
arguments CERT KEY (PEM files) it serves TLS (HTTP/2 negotiated by ALPN), else plaintext h2c.

Service test.Echo:
  Echo (unary):  answers b"echo:<request> md=<x-md>" with initial metadata x-initial: hi and
                 trailing metadata x-trailing: bye; logs "Echo md=<x-md> service=<x-from-service>
                 timeout=<yes|no>".
  Fail (unary):  aborts with NOT_FOUND, "no such thing: é"; logs "Fail".
  Slow (unary):  sleeps 2 s, then logs "Slow cancelled" or "Slow done" (whether the client is
                 still there) and answers b"late".
  Chat (bidi):   initial metadata x-initial: chat; answers each message m with b"got:<m>" (log
                 "Chat got <m>"); when the client ends its messages logs "Chat end", sets trailing
                 metadata x-trailing: chat-bye and answers b"end". A call reset before that end:
                 "Chat cancelled".
"""

import sys
import threading
import time
from concurrent import futures

import grpc


def log(line):
    print(line, flush=True)


def echo(request, context):
    metadata = dict(context.invocation_metadata())
    md = metadata.get("x-md", "")
    timeout = "yes" if context.time_remaining() is not None else "no"
    log(f"Echo md={md} service={metadata.get('x-from-service', '')} timeout={timeout}")
    context.send_initial_metadata((("x-initial", "hi"),))
    context.set_trailing_metadata((("x-trailing", "bye"),))
    return b"echo:" + request + b" md=" + md.encode()


def fail(request, context):
    log("Fail")
    context.abort(grpc.StatusCode.NOT_FOUND, "no such thing: é")


def slow(request, context):
    time.sleep(2)
    log("Slow done" if context.is_active() else "Slow cancelled")
    return b"late"


def chat(requests, context):
    # A cancelled call may never resume this generator (grpcio stops driving it), so the cancel
    # is logged from the call's termination callback: terminated before the end was reached.
    ended = threading.Event()
    terminated = threading.Event()

    def on_termination():
        terminated.set()
        if not ended.is_set():
            log("Chat cancelled")

    context.add_callback(on_termination)
    context.send_initial_metadata((("x-initial", "chat"),))
    try:
        for message in requests:
            log(f"Chat got {message.decode()}")
            yield b"got:" + message
    except Exception:
        return
    # A reset may end the requests a moment before grpcio terminates the call: wait for that.
    if terminated.wait(0.2):
        return
    ended.set()
    log("Chat end")
    context.set_trailing_metadata((("x-trailing", "chat-bye"),))
    yield b"end"


def main():
    handlers = {
        "Echo": grpc.unary_unary_rpc_method_handler(echo),
        "Fail": grpc.unary_unary_rpc_method_handler(fail),
        "Slow": grpc.unary_unary_rpc_method_handler(slow),
        "Chat": grpc.stream_stream_rpc_method_handler(chat),
    }
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Echo", handlers),))
    if len(sys.argv) == 3:
        with open(sys.argv[1], "rb") as cert, open(sys.argv[2], "rb") as key:
            credentials = grpc.ssl_server_credentials(((key.read(), cert.read()),))
        port = server.add_secure_port("127.0.0.1:0", credentials)
    else:
        port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    log(port)
    # Ends with the test: stdin closes when the harness drops the process.
    sys.stdin.read()
    server.stop(0)


main()
