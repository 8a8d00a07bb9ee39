"""A legacy-era MCP server written as raw JSON-RPC on stdio (stdlib only, no Bastion code), so it
can send the results Bastion's own `Server` never would.

Tools:
- echo(text): a valid text result
- no_content(): a result object without `content`
- not_object(): a result that is a JSON array, not an object
- slow(delay): sleeps `delay` seconds (blocking: one call at a time), then a valid result

With `--log PATH` it appends one line per request it receives (`<method> [<tool name>]`) to PATH
before answering, so a test can tell what reached the upstream and when. With `--ignore-eof` it
keeps running after stdin ends (until a signal), as careless servers do: only the later rungs of
the shutdown ladder stop it.
"""

import json
import sys
import time

VERSIONS = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")
TOOLS = [
    {"name": name, "description": description,
     "inputSchema": {"type": "object", "properties": properties}}
    for name, description, properties in (
        ("echo", "Returns the text.", {"text": {"type": "string"}}),
        ("no_content", "Answers without content.", {}),
        ("not_object", "Answers with an array.", {}),
        ("slow", "Sleeps, then answers.", {"delay": {"type": "number"}}),
    )
]


def send(message):
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def text(value):
    return {"content": [{"type": "text", "text": value}]}


def call_tool(params):
    name = params.get("name")
    arguments = params.get("arguments") or {}
    if name == "echo":
        return text(str(arguments.get("text", "")))
    if name == "no_content":
        return {"structuredContent": {"note": "no content list here"}}
    if name == "not_object":
        return ["not", "an", "object"]
    if name == "slow":
        time.sleep(float(arguments.get("delay", 1.0)))
        return text("slept")
    return None


def answer(method, params):
    """(result, error) for one request."""
    if method == "initialize":
        asked = params.get("protocolVersion")
        return {"protocolVersion": asked if asked in VERSIONS else VERSIONS[-1],
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "raw-tools", "version": "1.0.0"}}, None
    if method == "ping":
        return {}, None
    if method == "tools/list":
        return {"tools": TOOLS}, None
    if method == "tools/call":
        result = call_tool(params)
        if result is not None:
            return result, None
        return None, {"code": -32602, "message": f"unknown tool {params.get('name')!r}"}
    return None, {"code": -32601, "message": f"method {method!r} not found"}


def main():
    log = sys.argv[sys.argv.index("--log") + 1] if "--log" in sys.argv else None
    for line in sys.stdin:
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if not isinstance(message, dict) or "id" not in message or "method" not in message:
            continue  # notifications and responses need no answer
        method = message["method"]
        params = message.get("params") or {}
        if log is not None:
            with open(log, "a", encoding="utf-8") as handle:
                handle.write(f"{method} {params.get('name', '')}".rstrip() + "\n")
        result, error = answer(method, params)
        reply = {"jsonrpc": "2.0", "id": message["id"]}
        reply.update({"error": error} if error is not None else {"result": result})
        send(reply)
    if "--ignore-eof" in sys.argv:
        while True:
            time.sleep(1)


if __name__ == "__main__":
    main()
