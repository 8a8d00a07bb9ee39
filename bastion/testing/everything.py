"""The conformance fixture ("everything" server), built with `bastion.server.Server`.

It registers every tool, resource, template and prompt that the MCP conformance suite expects
of a server under test (see the fixture contract in the conformance notes), with the exact
names and behaviours. One definition answers both eras:

- legacy (2025-11-25 and older, after `initialize`): `ctx.sample`, `ctx.elicit` and
  `ctx.gather` are server-to-client requests awaited in place;
- modern (2026-07-28, per-request `_meta`): the same calls become Multi Round-Trip Requests:
  the client gets `resultType: "input_required"` with the input requests and a sealed
  `requestState`, and retries with `inputResponses`. The framework re-runs the handler, keeps
  `ctx.state` across rounds and rejects tampered state with -32602.

Run it with `python -m bastion.testing.everything` (stdio) or
`python -m bastion.testing.everything --http 127.0.0.1:3001` (Streamable HTTP, both eras on
http://127.0.0.1:3001/mcp).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from typing import Any

from bastion import __version__
from bastion.protocol.capabilities import elicitation_modes
from bastion.protocol.errors import MCPError
from bastion.protocol.results import audio, embedded_text, image, text
from bastion.protocol.versions import Era
from bastion.server import (
    Context,
    InputRequired,
    PromptArgument,
    Server,
    ToolError,
    run_stdio,
)
from bastion.transport.http import run_http

SERVER_NAME = "bastion-everything"

#: A real 1x1 PNG (one red, opaque RGBA pixel).
PNG_1X1_BASE64 = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP4z8DwHwAFAAH/VscvDQAAAABJRU5ErkJggg=="
)
#: A real WAV file: PCM, mono, 16-bit, 8 kHz, eight samples of a square-ish wave.
WAV_BASE64 = "UklGRjQAAABXQVZFZm10IBAAAAABAAEAQB8AAIA+AAACABAAZGF0YRAAAAAAAOAuAAAg0QAA4C4AACDR"

SIMPLE_TEXT = "This is a simple text response for testing."
EMBEDDED_RESOURCE_URI = "test://embedded-resource"
EMBEDDED_RESOURCE_TEXT = "This is an embedded resource content."
MIXED_RESOURCE_URI = "test://mixed-content-resource"
MIXED_RESOURCE_JSON = json.dumps({"test": "data", "value": 123}, separators=(",", ":"))
STATIC_TEXT = "This is the content of the static text resource."
EXAMPLE_RESOURCE_URI = "test://example-resource"
EXAMPLE_RESOURCE_TEXT = "Embedded resource content for testing."
WATCHED_RESOURCE_TEXT = "Watched resource content"
TOOL_ERROR_TEXT = "This tool intentionally returns an error for testing"
LOG_STEPS = ("Tool execution started", "Tool processing data", "Tool execution completed")
STEP_DELAY = 0.05

NAME_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"name": {"type": "string"}},
    "required": ["name"],
}
CONFIRM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"ok": {"type": "boolean"}},
    "required": ["ok"],
}
COLOR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"color": {"type": "string"}},
    "required": ["color"],
}
CONTEXT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"context": {"type": "string"}},
    "required": ["context"],
}
USER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "username": {"type": "string", "description": "Your user name"},
        "email": {"type": "string", "format": "email", "description": "Your email address"},
    },
    "required": ["username", "email"],
}
#: SEP-1034: a default for every primitive type.
DEFAULTS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "description": "User name", "default": "John Doe"},
        "age": {"type": "integer", "description": "User age", "default": 30},
        "score": {"type": "number", "description": "User score", "default": 95.5},
        "status": {
            "type": "string",
            "description": "User status",
            "enum": ["active", "inactive", "pending"],
            "default": "active",
        },
        "verified": {"type": "boolean", "description": "Verification status", "default": True},
    },
    "required": [],
}
#: SEP-1330: the five enum forms.
ENUMS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "untitledSingle": {
            "type": "string",
            "description": "Select one option",
            "enum": ["option1", "option2", "option3"],
        },
        "titledSingle": {
            "type": "string",
            "description": "Select one option with titles",
            "oneOf": [
                {"const": "value1", "title": "First Option"},
                {"const": "value2", "title": "Second Option"},
                {"const": "value3", "title": "Third Option"},
            ],
        },
        "legacyEnum": {
            "type": "string",
            "description": "Select one option (legacy)",
            "enum": ["opt1", "opt2", "opt3"],
            "enumNames": ["Option One", "Option Two", "Option Three"],
        },
        "untitledMulti": {
            "type": "array",
            "description": "Select multiple options",
            "minItems": 1,
            "maxItems": 3,
            "items": {"type": "string", "enum": ["option1", "option2", "option3"]},
        },
        "titledMulti": {
            "type": "array",
            "description": "Select multiple options with titles",
            "minItems": 1,
            "maxItems": 3,
            "items": {
                "anyOf": [
                    {"const": "value1", "title": "First Choice"},
                    {"const": "value2", "title": "Second Choice"},
                    {"const": "value3", "title": "Third Choice"},
                ]
            },
        },
    },
    "required": [],
}
#: SEP-1613 / SEP-2106: 2020-12 keywords that tools/list must keep verbatim.
JSON_SCHEMA_2020_12: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "$defs": {
        "address": {
            "$anchor": "addressDef",
            "type": "object",
            "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
        }
    },
    "properties": {
        "name": {"type": "string"},
        "address": {"$ref": "#/$defs/address"},
        "contactMethod": {"type": "string", "enum": ["phone", "email"]},
        "phone": {"type": "string"},
        "email": {"type": "string"},
    },
    "allOf": [{"anyOf": [{"required": ["phone"]}, {"required": ["email"]}]}],
    "if": {
        "properties": {"contactMethod": {"const": "phone"}},
        "required": ["contactMethod"],
    },
    "then": {"required": ["phone"]},
    "else": {"required": ["email"]},
    "additionalProperties": False,
}
#: A tool argument mirrored into the `Mcp-Param-Region` HTTP header (modern HTTP clients).
HEADER_TOOL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "region": {
            "type": "string",
            "description": "The region to run in (sent as the Mcp-Param-Region header)",
            "x-mcp-header": "Region",
        },
        "query": {"type": "string", "description": "What to run"},
    },
    "required": ["region"],
}

COMPLETION_VALUES = ("paris", "park", "party", "pasta", "peach")


# -- input request builders -------------------------------------------------------------


def elicit_request(message: str, schema: dict[str, Any]) -> dict[str, Any]:
    """A form-mode `elicitation/create` input request."""
    return {
        "method": "elicitation/create",
        "params": {"mode": "form", "message": message, "requestedSchema": schema},
    }


def sampling_request(prompt: str, max_tokens: int) -> dict[str, Any]:
    """A `sampling/createMessage` input request with one user text message."""
    return {
        "method": "sampling/createMessage",
        "params": {
            "messages": [{"role": "user", "content": {"type": "text", "text": prompt}}],
            "maxTokens": max_tokens,
        },
    }


def roots_request() -> dict[str, Any]:
    return {"method": "roots/list", "params": {}}


def accepted(result: dict[str, Any], field: str) -> Any:
    """`content[field]` of an accepted ElicitResult, else None."""
    content = result.get("content")
    if result.get("action") != "accept" or not isinstance(content, dict):
        return None
    return content.get(field)


def sampled_text(result: dict[str, Any]) -> str:
    """The text of a CreateMessageResult (content is one block or, since 2025-11-25, a list)."""
    content = result.get("content")
    blocks = content if isinstance(content, list) else [content]
    texts = [b["text"] for b in blocks if isinstance(b, dict) and isinstance(b.get("text"), str)]
    return " ".join(texts) if texts else "No response"


def root_uris(result: dict[str, Any]) -> list[str]:
    roots = result.get("roots")
    if not isinstance(roots, list):
        raise ToolError("the client's roots/list answer has no roots list")
    return [r["uri"] for r in roots if isinstance(r, dict) and isinstance(r.get("uri"), str)]


def elicitation_outcome(result: dict[str, Any]) -> str:
    return (f"action={result.get('action')}, "
            f"content={json.dumps(result.get('content') or {}, sort_keys=True)}")


def legacy_failure(what: str, exc: MCPError) -> ToolError:
    """A legacy client's error answer (or a missing capability), as a tool error."""
    return ToolError(f"{what} not supported or failed: {exc.message}")


async def elicit_or_fail(
    ctx: Context, message: str, schema: dict[str, Any], *, key: str
) -> dict[str, Any]:
    """Elicit; in legacy a refusal is a tool error, in modern -32021 and friends stay errors."""
    try:
        return await ctx.elicit(message, schema, key=key)
    except MCPError as exc:
        if ctx.era is Era.MODERN:
            raise
        raise legacy_failure("Elicitation", exc) from exc


# -- tools --------------------------------------------------------------------------------


def add_content_tools(server: Server) -> None:
    """Tools that return fixed content of every kind, log, report progress or fail."""

    @server.tool("test_simple_text")
    async def simple_text() -> str:
        """Returns one text block."""
        return SIMPLE_TEXT

    @server.tool("test_image_content")
    async def image_content() -> dict[str, Any]:
        """Returns one image block (a 1x1 PNG)."""
        return image(PNG_1X1_BASE64, "image/png")

    @server.tool("test_audio_content")
    async def audio_content() -> dict[str, Any]:
        """Returns one audio block (a short WAV)."""
        return audio(WAV_BASE64, "audio/wav")

    @server.tool("test_embedded_resource")
    async def embedded_resource() -> dict[str, Any]:
        """Returns one embedded text resource."""
        return embedded_text(EMBEDDED_RESOURCE_URI, EMBEDDED_RESOURCE_TEXT, "text/plain")

    @server.tool("test_multiple_content_types")
    async def multiple_content_types() -> list[dict[str, Any]]:
        """Returns text, an image and an embedded JSON resource."""
        return [
            text("Multiple content types test:"),
            image(PNG_1X1_BASE64, "image/png"),
            embedded_text(MIXED_RESOURCE_URI, MIXED_RESOURCE_JSON, "application/json"),
        ]

    @server.tool("test_tool_with_logging")
    async def tool_with_logging(ctx: Context) -> str:
        """Sends three info log messages about 50 ms apart (if the client asked for logs)."""
        for index, message in enumerate(LOG_STEPS):
            if index:
                await asyncio.sleep(STEP_DELAY)
            await ctx.log("info", message, logger=SERVER_NAME)
        return "Tool with logging executed successfully"

    @server.tool("test_tool_with_progress")
    async def tool_with_progress(ctx: Context) -> str:
        """Reports progress 0, 50, 100 of 100 about 50 ms apart (if given a progress token)."""
        for index, value in enumerate((0, 50, 100)):
            if index:
                await asyncio.sleep(STEP_DELAY)
            await ctx.report_progress(value, 100, f"Completed step {value} of 100")
        token = ctx.request.incoming.progress_token
        if token is None:
            return "Progress test completed (no progress token, so no notifications)"
        return f"Progress test completed for token {token!r}"

    @server.tool("test_error_handling")
    async def error_handling() -> str:
        """Always fails with a tool error (isError: true), not a JSON-RPC error."""
        raise ToolError(TOOL_ERROR_TEXT)

    @server.tool("test_logging_tool")
    async def logging_tool(ctx: Context) -> str:
        """Logs one info message; delivered only if the request asked for it (modern: logLevel)."""
        await ctx.log("info", "test_logging_tool ran", logger=SERVER_NAME)
        return "Logging tool completed"

    @server.tool("test_reconnection")
    async def reconnection() -> str:
        """Takes a moment, so a transport may drop and resume its stream meanwhile (SEP-1699)."""
        await asyncio.sleep(0.1)
        return ("Reconnection test completed successfully. If you received this, the client "
                "properly reconnected after stream closure.")

    @server.tool("test_tool_with_task", task_support="optional")
    async def tool_with_task() -> str:
        """Completes after a short while; may run as a task (tasks extension)."""
        await asyncio.sleep(STEP_DELAY)
        return "Task tool completed"

    @server.tool("json_schema_2020_12_tool", input_schema=JSON_SCHEMA_2020_12)
    async def json_schema_tool(**arguments: Any) -> str:
        """Tool with JSON Schema 2020-12 features ($defs/$anchor, allOf/anyOf, if/then/else)."""
        return f"JSON Schema 2020-12 tool called with: {json.dumps(arguments, sort_keys=True)}"

    @server.tool("test_header_tool", input_schema=HEADER_TOOL_SCHEMA)
    async def header_tool(region: str, query: str = "") -> str:
        """Echoes its region, which HTTP clients mirror into the Mcp-Param-Region header."""
        return f"region={region} query={query}"


def add_client_input_tools(server: Server) -> None:
    """Tools that need the client: sampling, elicitation and roots, in either era."""

    @server.tool("test_sampling")
    async def sampling(prompt: str, ctx: Context) -> str:
        """Asks the client's model (sampling/createMessage, maxTokens 100)."""
        try:
            result = await ctx.sample(
                [{"role": "user", "content": {"type": "text", "text": prompt}}],
                max_tokens=100, key="llm_response",
            )
        except MCPError as exc:
            if ctx.era is Era.MODERN:  # -32021 and friends stay protocol errors
                raise
            raise legacy_failure("Sampling", exc) from exc
        return f"LLM response: {sampled_text(result)}"

    @server.tool("test_elicitation")
    async def elicitation(message: str, ctx: Context) -> str:
        """Asks the user for a username and an email (elicitation/create, form mode)."""
        result = await elicit_or_fail(ctx, message, USER_SCHEMA, key="user_details")
        return f"User response: {elicitation_outcome(result)}"

    @server.tool("test_elicitation_sep1034_defaults")
    async def elicitation_defaults(ctx: Context) -> str:
        """Elicits a form whose every primitive field has a default (SEP-1034)."""
        result = await elicit_or_fail(ctx, "Please review and update the form fields with defaults",
                                      DEFAULTS_SCHEMA, key="defaults")
        return f"Elicitation completed: {elicitation_outcome(result)}"

    @server.tool("test_elicitation_sep1330_enums")
    async def elicitation_enums(ctx: Context) -> str:
        """Elicits the five enum forms: untitled/titled/legacy single, untitled/titled multi."""
        result = await elicit_or_fail(ctx, "Please select options from the enum fields",
                                      ENUMS_SCHEMA, key="enums")
        return f"Elicitation completed: {elicitation_outcome(result)}"

    @server.tool("test_missing_capability")
    async def missing_capability(ctx: Context) -> str:
        """Needs sampling: without it, modern requests get -32021 and legacy ones a tool error."""
        result = await ctx.sample(
            [{"role": "user", "content": {"type": "text", "text": "Say hello"}}],
            max_tokens=10, key="needs_sampling",
        )
        return f"The client declared sampling and answered: {sampled_text(result)}"

    @server.tool("test_streaming_elicitation")
    async def streaming_elicitation(ctx: Context) -> str:
        """Asks for a name; modern: an input_required result, never a request on the stream."""
        result = await ctx.elicit("What is your name?", NAME_SCHEMA, key="user_name")
        name = accepted(result, "name")
        return f"Hello, {name}!" if isinstance(name, str) else f"No name ({result.get('action')})."

    @server.tool("test_trigger_tool_change")
    async def trigger_tool_change() -> str:
        """Announces tools/list_changed to legacy sessions and modern listen streams."""
        await server.notify_list_changed("tools")
        return "Tools list_changed sent"

    @server.tool("test_trigger_prompt_change")
    async def trigger_prompt_change() -> str:
        """Announces prompts/list_changed to legacy sessions and modern listen streams."""
        await server.notify_list_changed("prompts")
        return "Prompts list_changed sent"


def add_input_required_tools(server: Server) -> None:
    """The SEP-2322 (MRTR) fixtures, with the exact input keys the suite expects."""

    @server.tool("test_input_required_result_elicitation")
    async def mrtr_elicitation(ctx: Context) -> str:
        """Round 1 asks for a name (key user_name); round 2 greets."""
        request = elicit_request("What is your name?", NAME_SCHEMA)
        result = (await ctx.gather({"user_name": request}))["user_name"]
        name = accepted(result, "name")
        if result.get("action") == "accept" and not isinstance(name, str):
            if ctx.era is Era.MODERN:  # accepted without a usable name: ask again
                raise InputRequired({"user_name": request})
            raise ToolError("the elicitation was accepted without a name")
        if name is None:
            return f"No name given (action={result.get('action')})."
        return f"Hello, {name}!"

    @server.tool("test_input_required_result_sampling")
    async def mrtr_sampling(ctx: Context) -> str:
        """Asks the client's model a question (key capital_question)."""
        request = sampling_request("What is the capital of France?", 100)
        result = (await ctx.gather({"capital_question": request}))["capital_question"]
        return f"The model answered: {sampled_text(result)}"

    @server.tool("test_input_required_result_list_roots")
    async def mrtr_list_roots(ctx: Context) -> str:
        """Asks for the client's roots (key client_roots)."""
        result = (await ctx.gather({"client_roots": roots_request()}))["client_roots"]
        uris = root_uris(result)
        return f"Client roots ({len(uris)}): {', '.join(uris) or 'none'}"

    @server.tool("test_input_required_result_request_state")
    async def mrtr_request_state(ctx: Context) -> str:
        """Asks for confirmation (key confirm) with a requestState it checks in round 2."""
        request = elicit_request("Please confirm", CONFIRM_SCHEMA)
        issued = ctx.state.get("flow") == "confirm"
        ctx.state["flow"] = "confirm"
        result = (await ctx.gather({"confirm": request}))["confirm"]
        if ctx.era is Era.MODERN and not issued:
            # An answer without the state this server issued: ask again, with a state.
            raise InputRequired({"confirm": request})
        verdict = "state-ok" if ctx.era is Era.MODERN else "state-ok (legacy session, no state)"
        return f"{verdict}: confirmed={accepted(result, 'ok')!r}"

    @server.tool("test_input_required_result_multiple_inputs")
    async def mrtr_multiple_inputs(ctx: Context) -> str:
        """Asks for a name, a greeting and the roots at once; completes when all are answered."""
        answers = await ctx.gather({
            "user_name": elicit_request("What is your name?", NAME_SCHEMA),
            "greeting": sampling_request("Generate a greeting", 50),
            "client_roots": roots_request(),
        })
        name = accepted(answers["user_name"], "name") or "stranger"
        greeting = sampled_text(answers["greeting"])
        uris = root_uris(answers["client_roots"])
        return f"{greeting} {name}! Roots: {', '.join(uris) or 'none'}"

    @server.tool("test_input_required_result_multi_round")
    async def mrtr_multi_round(ctx: Context) -> str:
        """Three rounds: step1 (name), then step2 (colour) with a new state, then done."""
        ctx.state.setdefault("round", 1)
        first = (await ctx.gather({
            "step1": elicit_request("Step 1: What is your name?", NAME_SCHEMA),
        }))["step1"]
        ctx.state["round"] = 2
        ctx.state["name"] = accepted(first, "name")
        second = (await ctx.gather({
            "step2": elicit_request("Step 2: What is your favorite color?", COLOR_SCHEMA),
        }))["step2"]
        name = ctx.state["name"] or "stranger"
        return f"{name}'s favorite color is {accepted(second, 'color') or 'unknown'}."

    @server.tool("test_input_required_result_tampered_state")
    async def mrtr_tampered_state(ctx: Context) -> str:
        """Asks for confirmation; its sealed requestState is rejected (-32602) if altered."""
        ctx.state["issued"] = True
        result = (await ctx.gather({"confirm": elicit_request("Please confirm",
                                                               CONFIRM_SCHEMA)}))["confirm"]
        return f"Signed state verified: confirmed={accepted(result, 'ok')!r}"

    @server.tool("test_input_required_result_capabilities")
    async def mrtr_capabilities(ctx: Context) -> str:
        """Asks only for the input kinds the client declared (sampling, elicitation, roots)."""
        requests: dict[str, dict[str, Any]] = {}
        if ctx.has_capability("sampling"):
            requests["capital_question"] = sampling_request("What is the capital of France?",
                                                            100)
        if "form" in elicitation_modes(ctx.client_capabilities):
            requests["user_name"] = elicit_request("What is your name?", NAME_SCHEMA)
        if ctx.has_capability("roots"):
            requests["client_roots"] = roots_request()
        if not requests:
            return "The client declared no input capability; nothing to ask."
        answers = await ctx.gather(requests)
        return f"Received answers for: {', '.join(sorted(answers))}"


# -- resources and prompts --------------------------------------------------------------------


def add_resources(server: Server) -> None:
    @server.resource("test://static-text", name="static-text", title="Static Text Resource",
                     mime_type="text/plain")
    async def static_text() -> str:
        """A static text resource for testing."""
        return STATIC_TEXT

    @server.resource("test://static-binary", name="static-binary",
                     title="Static Binary Resource", mime_type="image/png")
    async def static_binary() -> dict[str, Any]:
        """A static binary resource (a 1x1 PNG) for testing."""
        return {"mimeType": "image/png", "blob": PNG_1X1_BASE64}

    @server.resource("test://watched-resource", name="watched-resource",
                     title="Watched Resource", mime_type="text/plain", subscribable=True)
    async def watched_resource() -> str:
        """A resource clients can subscribe to."""
        return WATCHED_RESOURCE_TEXT

    @server.resource(EMBEDDED_RESOURCE_URI, name="embedded-resource",
                     title="Embedded Resource", mime_type="text/plain")
    async def embedded_resource() -> str:
        """The resource test_embedded_resource embeds."""
        return EMBEDDED_RESOURCE_TEXT

    @server.resource(MIXED_RESOURCE_URI, name="mixed-content-resource",
                     title="Mixed Content Resource", mime_type="application/json")
    async def mixed_content_resource() -> str:
        """The JSON resource test_multiple_content_types embeds."""
        return MIXED_RESOURCE_JSON

    @server.resource(EXAMPLE_RESOURCE_URI, name="example-resource", title="Example Resource",
                     mime_type="text/plain")
    async def example_resource() -> str:
        """The resource the suite passes to test_prompt_with_embedded_resource."""
        return EXAMPLE_RESOURCE_TEXT

    @server.resource_template("test://template/{id}/data", name="template",
                              title="Resource Template", mime_type="application/json")
    async def template_data(id: str) -> str:
        """A resource template with parameter substitution."""
        return json.dumps({"id": id, "templateTest": True, "data": f"Data for ID: {id}"})


def add_prompts(server: Server) -> None:
    @server.prompt("test_simple_prompt", title="Simple Test Prompt")
    async def simple_prompt() -> str:
        """A simple prompt without arguments."""
        return "This is a simple prompt for testing."

    @server.prompt("test_prompt_with_arguments", title="Prompt With Arguments", arguments=[
        PromptArgument("arg1", "First test argument", required=True),
        PromptArgument("arg2", "Second test argument", required=True),
    ])
    async def prompt_with_arguments(arg1: str, arg2: str) -> str:
        """A prompt with required arguments."""
        return f"Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"

    @server.prompt("test_prompt_with_embedded_resource", title="Prompt With Embedded Resource",
                   arguments=[PromptArgument("resourceUri", "URI of the resource to embed",
                                             required=True)])
    async def prompt_with_embedded_resource(resourceUri: str) -> list[dict[str, Any]]:
        """A prompt that includes an embedded resource."""
        return [
            {"role": "user",
             "content": embedded_text(resourceUri, EXAMPLE_RESOURCE_TEXT, "text/plain")},
            {"role": "user", "content": text("Please process the embedded resource above.")},
        ]

    @server.prompt("test_prompt_with_image", title="Prompt With Image")
    async def prompt_with_image() -> list[dict[str, Any]]:
        """A prompt that includes image content."""
        return [
            {"role": "user", "content": image(PNG_1X1_BASE64, "image/png")},
            {"role": "user", "content": text("Please analyze the image above.")},
        ]

    @server.prompt("test_input_required_result_prompt", title="Input Required Prompt")
    async def input_required_prompt(ctx: Context) -> list[dict[str, Any]]:
        """A prompt that first asks the user for context (key user_context)."""
        result = (await ctx.gather({"user_context": elicit_request(
            "What context should the prompt use?", CONTEXT_SCHEMA)}))["user_context"]
        context = accepted(result, "context") or "no context"
        return [{"role": "user", "content": text(f"Answer with this context in mind: {context}")}]

    @server.completion
    async def complete(ref: dict[str, Any], argument: dict[str, Any],
                       context_arguments: dict[str, Any]) -> list[str]:
        if (ref.get("type") == "ref/prompt" and ref.get("name") == "test_prompt_with_arguments"
                and argument.get("name") == "arg1"):
            prefix = str(argument.get("value") or "")
            return [value for value in COMPLETION_VALUES if value.startswith(prefix)]
        return []


def build_server() -> Server:
    """The conformance fixture server, ready to serve over stdio or HTTP."""
    server = Server(
        SERVER_NAME,
        __version__,
        title="Bastion conformance fixture (everything server)",
        instructions="Conformance fixture: every tool, resource and prompt the MCP "
                     "conformance suite expects. Not for production use.",
    )
    add_content_tools(server)
    add_client_input_tools(server)
    add_input_required_tools(server)
    add_resources(server)
    add_prompts(server)
    return server


# -- command line -----------------------------------------------------------------------------

def parse_host_port(value: str) -> tuple[str, int]:
    """`HOST:PORT` (IPv6 in brackets: `[::1]:3001`)."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port_text)


def serve_http(server: Server, host: str, port: int, *, log_level: str) -> int:
    """Serve over Streamable HTTP at http://HOST:PORT/mcp until interrupted."""
    run_http(server, host=host, port=port, log_level=log_level)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bastion.testing.everything",
        description="The Bastion conformance fixture server (both protocol eras).",
    )
    parser.add_argument("--http", metavar="HOST:PORT", type=parse_host_port,
                        help="serve Streamable HTTP on HOST:PORT instead of stdio")
    parser.add_argument("--log-level", default="WARNING",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="level of the server's own log on stderr (default: WARNING)")
    args = parser.parse_args(argv)
    server = build_server()
    if args.http is not None:
        host, port = args.http
        return serve_http(server, host, port, log_level=args.log_level)
    run_stdio(server, log_level=args.log_level)
    return 0


__all__ = ["PNG_1X1_BASE64", "WAV_BASE64", "build_server", "main"]


if __name__ == "__main__":
    sys.exit(main())
