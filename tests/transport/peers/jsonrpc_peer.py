"""A small, synchronous newline-JSON-RPC peer used as a real child process in the tests.

It reads one message per line on stdin and answers requests on stdout; it exits with code 0
at EOF on stdin. Methods:

- echo: result {"params": params}
- env: result {"env": the environment, "cwd": the working directory, "pgid": its group}
- garbage_then_echo: writes non-JSON and a bad envelope to stdout, then answers like echo
- oversize_then_echo: writes one line of params.size bytes, then answers like echo
- stderr: writes params.lines to stderr, then answers {}
- die: writes params.message to stderr and exits at once with params.code (default 3)
- close_stdout: closes stdout (the process stays alive until stdin ends)
- hang: never answers
- cancelled_seen: result {"ids": the requestIds of every notifications/cancelled so far}

With --banner it first prints a non-JSON greeting on stdout, as careless servers do.
"""

import json
import os
import sys


def send(message):
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def main():
    if "--banner" in sys.argv:
        sys.stdout.write("Server starting... listening on stdio\n")
        sys.stdout.flush()
    cancelled = []
    for line in sys.stdin:
        try:
            message = json.loads(line)
        except ValueError:
            continue
        method = message.get("method")
        params = message.get("params") or {}
        if "id" not in message:
            if method == "notifications/cancelled":
                cancelled.append(params.get("requestId"))
            continue
        request_id = message["id"]
        if method == "echo":
            send({"jsonrpc": "2.0", "id": request_id, "result": {"params": params}})
        elif method == "env":
            result = {"env": dict(os.environ), "cwd": os.getcwd(), "pgid": os.getpgrp()}
            send({"jsonrpc": "2.0", "id": request_id, "result": result})
        elif method == "garbage_then_echo":
            sys.stdout.write("{this is not json\n")
            sys.stdout.write('{"jsonrpc": "1.0", "id": "x", "result": {}}\n')
            send({"jsonrpc": "2.0", "id": request_id, "result": {"params": params}})
        elif method == "oversize_then_echo":
            sys.stdout.write('{"pad": "' + "x" * params["size"] + '"}\n')
            send({"jsonrpc": "2.0", "id": request_id, "result": {"params": params}})
        elif method == "stderr":
            for text in params.get("lines", []):
                sys.stderr.write(text + "\n")
            sys.stderr.flush()
            send({"jsonrpc": "2.0", "id": request_id, "result": {}})
        elif method == "die":
            sys.stderr.write(params.get("message", "dying") + "\n")
            sys.stderr.flush()
            os._exit(params.get("code", 3))
        elif method == "close_stdout":
            sys.stdout.flush()
            os.close(1)
        elif method == "hang":
            pass
        elif method == "cancelled_seen":
            send({"jsonrpc": "2.0", "id": request_id, "result": {"ids": cancelled}})
        else:
            error = {"code": -32601, "message": f"unknown method {method}"}
            send({"jsonrpc": "2.0", "id": request_id, "error": error})


if __name__ == "__main__":
    main()
