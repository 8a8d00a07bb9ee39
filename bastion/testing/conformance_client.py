"""The conformance harness's client program: `python -m bastion.testing.conformance_client URL`.

The harness (`conformance client --command ...`) starts a mock server per scenario and runs
this program with the server URL as the last argument. The environment says what to do:
`MCP_CONFORMANCE_SCENARIO` names the scenario, `MCP_CONFORMANCE_PROTOCOL_VERSION` the version
(up to 2025-11-25: the legacy `initialize` handshake; 2026-07-28: modern, stateless), and
`MCP_CONFORMANCE_CONTEXT` (JSON, optional) carries scenario data such as the tool calls to make.
The harness judges the traffic it captured, so the program's job is to behave like a real
client: connect with Bastion's HTTP client, list what the server offers, and use it.

Most scenarios need nothing more than that generic walk; the few that need a particular
sequence have their own function in `SCENARIOS`. Every connection carries Bastion's OAuth
client (`bastion.client.oauth`), so the `auth/*` scenarios run the same walk and authorize
when the server asks: the mock authorization servers approve at once, so the headless
authorizer reads the redirect from `Location`. They run on http://localhost, hence the
loopback opt-in of the egress policy. The client "hosts" its CIMD document at
`CLIENT_METADATA_URL` (the URL the suite expects), and pre-registered credentials come from
the context (`client_id`, `client_secret`, `issuer`), as the harness contract says. A
refused authorization (a mismatched resource or issuer, a forged `iss`) ends the program
with an error, which those scenarios expect.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from bastion import __version__
from bastion.client import (
    Client,
    ClientHandlers,
    HeadlessAuthorizer,
    OAuthClientSettings,
    OAuthProvider,
    PreRegisteredClient,
    connect_http,
)
from bastion.protocol.errors import MCPError
from bastion.protocol.versions import MODERN_VERSIONS
from bastion.session.client_side import ClientMode
from bastion.transport.http.egress import EgressClient, EgressPolicy

logger = logging.getLogger("bastion.testing.conformance_client")

CLIENT_INFO = {"name": "bastion-conformance-client", "version": __version__}
#: The harness's default when it resolved no version.
DEFAULT_VERSION = "2025-11-25"
REQUEST_TIMEOUT = 30.0
#: Where this client's Client ID Metadata Document lives (the URL the suite checks for).
CLIENT_METADATA_URL = "https://conformance-test.local/client-metadata.json"
#: Never served: the headless authorizer reads the redirect without following it.
REDIRECT_URI = "http://localhost:3000/callback"

Scenario = Callable[[Client, dict[str, Any]], Awaitable[None]]


# -- what the client does for the server ----------------------------------------------------


def value_for(schema: Any) -> Any:
    """A plausible value for a JSON schema: its default, else its first enum, else by type."""
    if not isinstance(schema, dict):
        return "test"
    if "default" in schema:
        return schema["default"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    for key in ("oneOf", "anyOf"):
        options = schema.get(key)
        if isinstance(options, list) and options and isinstance(options[0], dict):
            return value_for(options[0])
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if kind == "integer":
        return 1
    if kind == "number":
        return 1
    if kind == "boolean":
        return True
    if kind == "array":
        items = schema.get("items")
        return [value_for(items)] if isinstance(items, dict) and items else []
    if kind == "object":
        return arguments_for(schema)
    return "test"


def arguments_for(schema: Any, *, everything: bool = False) -> dict[str, Any]:
    """Arguments for an object schema: the required properties (or all of them)."""
    if not isinstance(schema, dict):
        return {}
    properties = schema.get("properties")
    if not isinstance(properties, dict):
        return {}
    required = schema.get("required")
    names = list(properties) if everything or not isinstance(required, list) else [
        name for name in required if name in properties
    ]
    return {name: value_for(properties[name]) for name in names}


async def on_sampling(params: dict[str, Any]) -> dict[str, Any]:
    logger.info("sampling/createMessage: %s", orjson.dumps(params)[:200])
    return {
        "role": "assistant",
        "content": {"type": "text", "text": "This is a response from the test client."},
        "model": "bastion-conformance-model",
        "stopReason": "endTurn",
    }


async def on_elicitation(params: dict[str, Any]) -> dict[str, Any]:
    """Accept, applying the schema's defaults (SEP-1034) and filling the rest by type."""
    logger.info("elicitation/create: %s", orjson.dumps(params)[:200])
    if params.get("mode") == "url":
        return {"action": "accept"}
    content = arguments_for(params.get("requestedSchema"), everything=True)
    return {"action": "accept", "content": content}


async def on_roots() -> list[dict[str, Any]]:
    return [{"uri": "file:///tmp/bastion-conformance", "name": "conformance"}]


def handlers() -> ClientHandlers:
    return ClientHandlers(sampling=on_sampling, elicitation=on_elicitation, roots=on_roots)


# -- scenarios -------------------------------------------------------------------------------


async def exercise(client: Client, context: dict[str, Any]) -> None:
    """List what the server offers and use each item once (tools, resources, prompts).

    A JSON-RPC error from the server is an answer, not a failure of this client: it is
    logged and the walk goes on (mock servers implement only what their scenario checks).
    """
    capabilities = client.server.capabilities
    tools = await client.list_tools()
    logger.info("tools: %s", [tool.get("name") for tool in tools])
    calls = context.get("toolCalls")
    if not isinstance(calls, list):
        calls = [{"name": tool["name"], "arguments": arguments_for(tool.get("inputSchema"))}
                 for tool in tools]
    for call in calls:
        await attempt(f"tools/call {call['name']}", client.call_tool(
            call["name"], call.get("arguments") or {}, timeout=REQUEST_TIMEOUT))
    if "resources" in capabilities:
        for resource in await client.list_resources():
            await attempt(f"resources/read {resource['uri']}",
                          client.read_resource(resource["uri"], timeout=REQUEST_TIMEOUT))
    if "prompts" in capabilities:
        for prompt in await client.list_prompts():
            arguments = {arg["name"]: "test" for arg in prompt.get("arguments") or []
                         if isinstance(arg, dict) and arg.get("required")}
            await attempt(f"prompts/get {prompt['name']}", client.get_prompt(
                prompt["name"], arguments, timeout=REQUEST_TIMEOUT))


async def attempt(what: str, operation: Awaitable[dict[str, Any]]) -> None:
    try:
        result = await operation
    except MCPError as exc:
        logger.warning("%s: the server answered with an error: %r", what, exc)
        return
    logger.info("%s -> %s", what, orjson.dumps(result)[:300])


async def connect_only(client: Client, context: dict[str, Any]) -> None:
    """The handshake scenarios: connect, and show the connection works."""
    tools = await client.list_tools()
    logger.info("connected (%s, %s); %d tools", client.era, client.protocol_version, len(tools))


async def echo_schema(client: Client, context: dict[str, Any]) -> None:
    """json-schema-2020-12-preservation: hand the focal tool's inputSchema back verbatim."""
    tools = {tool["name"]: tool for tool in await client.list_tools()}
    schema = tools["json_schema_2020_12_tool"]["inputSchema"]
    await client.call_tool("json_schema_echo", {"schema": schema}, timeout=REQUEST_TIMEOUT)


SCENARIOS: dict[str, Scenario] = {
    "initialize": connect_only,
    # Listing is the whole scenario: the check is that no network $ref gets fetched.
    "json-schema-ref-no-deref": connect_only,
    "json-schema-2020-12-preservation": echo_schema,
}


def mode_for(version: str) -> ClientMode:
    return "modern" if version in MODERN_VERSIONS else "legacy"


def oauth_settings(context: dict[str, Any]) -> OAuthClientSettings:
    """The client's OAuth identity; pre-registered credentials when the context has them."""
    clients: dict[str, PreRegisteredClient] = {}
    client_id, issuer = context.get("client_id"), context.get("issuer")
    if isinstance(client_id, str) and isinstance(issuer, str):
        secret = context.get("client_secret")
        clients[issuer] = PreRegisteredClient(client_id,
                                              secret if isinstance(secret, str) else None)
    return OAuthClientSettings(redirect_uri=REDIRECT_URI, client_name=CLIENT_INFO["name"],
                               client_metadata_url=CLIENT_METADATA_URL, clients=clients)


async def run(url: str, scenario: str, version: str, context: dict[str, Any]) -> None:
    action = SCENARIOS.get(scenario, exercise)
    egress = EgressClient(EgressPolicy(allow_insecure_loopback=True))
    try:
        oauth = OAuthProvider(url, oauth_settings(context), egress=egress,
                              authorizer=HeadlessAuthorizer(egress))
        async with connect_http(url, mode=mode_for(version), handlers=handlers(),
                                client_info=CLIENT_INFO, request_timeout=REQUEST_TIMEOUT,
                                probe_timeout=REQUEST_TIMEOUT, oauth=oauth) as client:
            logger.info("scenario %s: %s era, version %s", scenario, client.era,
                        client.protocol_version)
            await action(client, context)
    finally:
        await egress.aclose()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not argv:
        print("usage: python -m bastion.testing.conformance_client URL", file=sys.stderr)
        return 2
    url = argv[-1]
    scenario = os.environ.get("MCP_CONFORMANCE_SCENARIO", "")
    version = os.environ.get("MCP_CONFORMANCE_PROTOCOL_VERSION") or DEFAULT_VERSION
    raw_context = os.environ.get("MCP_CONFORMANCE_CONTEXT")
    context = orjson.loads(raw_context) if raw_context else {}
    try:
        asyncio.run(run(url, scenario, version, context))
    except Exception:
        logger.exception("scenario %s failed", scenario)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
