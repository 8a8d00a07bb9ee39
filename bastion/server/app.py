"""`Server`: write an MCP server once, serve it in both eras.

Register tools, resources, templates, prompts and a completion handler with decorators; the
server answers `initialize` (legacy) and `server/discover` (modern), lists with pagination
and caching hints, calls handlers with a `Context`, turns modern input needs into
`input_required` results with sealed `requestState`, and tells legacy sessions and modern
listen streams about changes.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from bastion.protocol.capabilities import has_extension
from bastion.protocol.errors import (
    InvalidParams,
    MCPError,
    MethodNotFound,
    MissingRequiredClientCapability,
    ResourceNotFound,
)
from bastion.protocol.jsonrpc import Notification
from bastion.protocol.messages import initialize_result
from bastion.protocol.meta import LOG_LEVELS, SERVER_INFO
from bastion.protocol.methods import CACHEABLE_METHODS, MODERN_TASK_REQUESTS, TASKS_EXTENSION
from bastion.protocol.results import COMPLETE, input_required
from bastion.protocol.sealed import StateSealer, request_binding
from bastion.protocol.versions import LEGACY_VERSIONS, MODERN_VERSIONS, Era, at_least
from bastion.server.context import (
    Context,
    InputProvider,
    InputRequired,
    call_handler,
    context_parameter,
)
from bastion.server.pagination import paginate
from bastion.server.prompts import Prompt, PromptArgument, to_prompt_result
from bastion.server.resources import Resource, ResourceTemplate, to_contents
from bastion.server.subscriptions import Subscribers
from bastion.server.tasks import (
    LEGACY_TASK_CAPABILITIES,
    LEGACY_TASKS_VERSION,
    ServerTasks,
    TaskStore,
)
from bastion.server.tools import Tool, ToolResult, make_tool
from bastion.session.server_side import ServerConnection, ServerRequest

logger = logging.getLogger("bastion.server")

CompletionHandler = Callable[[dict[str, Any], dict[str, Any], dict[str, Any]], Awaitable[Any]]
Handler = Callable[[ServerRequest], Awaitable[dict[str, Any]]]


class Server:
    """An MCP server definition; serve it with `bastion.server.run_stdio` (or HTTP)."""

    def __init__(
        self,
        name: str,
        version: str = "0.1.0",
        *,
        title: str | None = None,
        instructions: str | None = None,
        page_size: int = 100,
        cache_ttl_ms: int = 0,
        cache_scope: str = "public",
        state_key: bytes | None = None,
        modern_versions: tuple[str, ...] = MODERN_VERSIONS,
        legacy_versions: tuple[str, ...] = LEGACY_VERSIONS,
        task_store: TaskStore | None = None,
    ) -> None:
        self.info: dict[str, Any] = {"name": name, "version": version}
        if title:
            self.info["title"] = title
        self.instructions = instructions
        self.page_size = page_size
        self.cache_ttl_ms = cache_ttl_ms
        self.cache_scope = cache_scope
        self.modern_versions = modern_versions
        self.legacy_versions = legacy_versions
        self.sealer = StateSealer(state_key)
        self.tools: dict[str, Tool] = {}
        self.resources: dict[str, Resource] = {}
        self.templates: dict[str, ResourceTemplate] = {}
        self.prompts: dict[str, Prompt] = {}
        self.completion_handler: CompletionHandler | None = None
        self.subscribers = Subscribers()
        self.logging_enabled = True
        self.tasks = ServerTasks(self, task_store)
        self._handlers: dict[str, Handler] = {
            "server/discover": self._discover,
            "tools/list": self._list_tools,
            "tools/call": self._call_tool,
            "resources/list": self._list_resources,
            "resources/templates/list": self._list_templates,
            "resources/read": self._read_resource,
            "resources/subscribe": self._subscribe,
            "resources/unsubscribe": self._unsubscribe,
            "subscriptions/listen": self._listen,
            "prompts/list": self._list_prompts,
            "prompts/get": self._get_prompt,
            "completion/complete": self._complete,
            "logging/setLevel": set_log_level,
            "tasks/get": self.tasks.get,
            "tasks/result": self.tasks.result,
            "tasks/cancel": self.tasks.cancel,
            "tasks/list": self.tasks.list_tasks,
            "tasks/update": self.tasks.update,
        }

    # -- registration ------------------------------------------------------------------

    def tool(
        self,
        name: str | None = None,
        *,
        description: str | None = None,
        input_schema: dict[str, Any] | None = None,
        **options: Any,
    ) -> Callable[[Callable[..., Awaitable[Any]]], Callable[..., Awaitable[Any]]]:
        """Register an async function as a tool (schema inferred from its type hints)."""

        def register(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
            tool = make_tool(fn, name=name, description=description, input_schema=input_schema,
                             **options)
            self.add_tool(tool)
            return fn

        return register

    def add_tool(self, tool: Tool) -> None:
        if tool.name in self.tools:
            raise ValueError(f"a tool named {tool.name!r} is already registered")
        self.tools[tool.name] = tool

    def remove_tool(self, name: str) -> None:
        self.tools.pop(name, None)

    def resource(
        self, uri: str, *, name: str | None = None, **options: Any
    ) -> Callable[[Callable[..., Awaitable[Any]]], Callable[..., Awaitable[Any]]]:
        def register(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
            options.setdefault("description", inspect.getdoc(fn))
            self.resources[uri] = Resource(uri, name or fn.__name__, fn,
                                           context_param=context_parameter(fn), **options)
            return fn

        return register

    def resource_template(
        self, uri_template: str, *, name: str | None = None, **options: Any
    ) -> Callable[[Callable[..., Awaitable[Any]]], Callable[..., Awaitable[Any]]]:
        def register(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
            options.setdefault("description", inspect.getdoc(fn))
            self.templates[uri_template] = ResourceTemplate(
                uri_template, name or fn.__name__, fn, context_param=context_parameter(fn),
                **options,
            )
            return fn

        return register

    def prompt(
        self,
        name: str | None = None,
        *,
        arguments: list[PromptArgument] | None = None,
        **options: Any,
    ) -> Callable[[Callable[..., Awaitable[Any]]], Callable[..., Awaitable[Any]]]:
        def register(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
            options.setdefault("description", inspect.getdoc(fn))
            context_param = context_parameter(fn)
            args = arguments
            if args is None:
                args = [
                    PromptArgument(p.name, required=p.default is p.empty)
                    for p in inspect.signature(fn).parameters.values()
                    if p.name != context_param
                ]
            prompt_name = name or fn.__name__
            self.prompts[prompt_name] = Prompt(prompt_name, fn, arguments=args,
                                               context_param=context_param, **options)
            return fn

        return register

    def completion(self, fn: CompletionHandler) -> CompletionHandler:
        """Register `async fn(ref, argument, context_arguments) -> list[str] | dict`."""
        self.completion_handler = fn
        return fn

    # -- change notifications -----------------------------------------------------------

    async def notify_list_changed(self, kind: str) -> None:
        """Tell clients that the tools, prompts or resources list changed."""
        await self.subscribers.list_changed(kind)

    async def notify_resource_updated(self, uri: str) -> None:
        await self.subscribers.resource_updated(uri)

    # -- capabilities and handshakes -----------------------------------------------------

    def capabilities(self, era: Era) -> dict[str, Any]:
        caps: dict[str, Any] = {}
        if self.tools:
            caps["tools"] = {"listChanged": True}
        if self.resources or self.templates:
            caps["resources"] = {"subscribe": True, "listChanged": True}
        if self.prompts:
            caps["prompts"] = {"listChanged": True}
        if self.completion_handler is not None:
            caps["completions"] = {}
        if self.logging_enabled:
            caps["logging"] = {}
        if era is Era.MODERN:
            caps.setdefault("extensions", {})[TASKS_EXTENSION] = {}
        return caps

    def initialize_result(self, version: str, connection: ServerConnection) -> dict[str, Any]:
        caps = self.capabilities(Era.LEGACY)
        if at_least(version, LEGACY_TASKS_VERSION):
            caps["tasks"] = dict(LEGACY_TASK_CAPABILITIES)
        return initialize_result(version, caps, self.info, self.instructions)

    def supports_method(self, method: str, request: ServerRequest) -> bool:
        if request.era is Era.MODERN and method in MODERN_TASK_REQUESTS:
            # Extension methods exist only for a request that declares the extension.
            return has_extension(request.client_capabilities, TASKS_EXTENSION)
        return method in self._handlers

    def connection_opened(self, connection: ServerConnection) -> None:
        self.subscribers.connections.add(connection)

    def connection_closed(self, connection: ServerConnection) -> None:
        self.subscribers.connections.discard(connection)
        self.tasks.connection_closed(connection)

    def end_streams(self, source: object) -> None:
        self.subscribers.close_listeners(source)

    async def on_client_notification(
        self, notification: Notification, connection: ServerConnection
    ) -> None:
        logger.debug("client notification %s", notification.method)

    # -- dispatch ------------------------------------------------------------------------

    async def handle(self, request: ServerRequest) -> dict[str, Any]:
        handler = self._handlers.get(request.method)
        if handler is None:
            raise MethodNotFound(f"method {request.method!r} is not available",
                                 data={"method": request.method})
        result = await handler(request)
        if request.era is Era.MODERN:
            result.setdefault("resultType", COMPLETE)
            if request.method in CACHEABLE_METHODS and result["resultType"] == COMPLETE:
                result.setdefault("ttlMs", self.cache_ttl_ms)
                result.setdefault("cacheScope", self.cache_scope)
            meta = result.setdefault("_meta", {})
            meta.setdefault(SERVER_INFO, self.info)
        return result

    async def _with_inputs(
        self, request: ServerRequest, run: Callable[[Context], Awaitable[dict[str, Any]]]
    ) -> dict[str, Any]:
        """Run a handler that may need client input, in the request's era."""
        if request.era is Era.LEGACY:
            return await run(Context(self, request))
        params = request.params
        answers: dict[str, Any] = {}
        state: dict[str, Any] = {}
        if "requestState" in params:
            sealed = self.sealer.open(params["requestState"],
                                      request_binding(request.method, params))
            answers, state = sealed.get("answers", {}), sealed.get("state", {})
        responses = params.get("inputResponses")
        if responses is not None and not isinstance(responses, dict):
            raise InvalidParams("inputResponses must be an object keyed by input request")
        context = Context(self, request, input_responses=responses, answers=answers, state=state)
        try:
            return await run(context)
        except InputRequired as need:
            kept = {k: context.answers[k] for k in context.consumed if k not in need.requests}
            token = self.sealer.seal({"answers": kept, "state": context.state},
                                     request_binding(request.method, request.params))
            return input_required(need.requests, token)

    async def ask_client(self, context: Context, requests: dict[str, Any]) -> dict[str, Any]:
        """Legacy: send input requests to the client as server-to-client requests."""
        connection = context.request.connection
        if connection is None:
            raise MCPError("this transport cannot carry server-to-client requests")
        keys = list(requests)
        results = await asyncio.gather(*(
            connection.request_client(requests[k]["method"], requests[k].get("params"))
            for k in keys
        ))
        return dict(zip(keys, results, strict=True))

    # -- discovery and lists -------------------------------------------------------------

    async def _discover(self, request: ServerRequest) -> dict[str, Any]:
        result: dict[str, Any] = {
            "supportedVersions": list(self.modern_versions),
            "capabilities": self.capabilities(Era.MODERN),
        }
        if self.instructions:
            result["instructions"] = self.instructions
        return result

    async def _list_tools(self, request: ServerRequest) -> dict[str, Any]:
        with_execution = request.era is Era.LEGACY and at_least(request.version, "2025-11-25")
        tools = [t.definition(include_execution=with_execution) for t in self.tools.values()]
        return paginate(tools, "tools", request.params.get("cursor"), self.page_size)

    async def _list_resources(self, request: ServerRequest) -> dict[str, Any]:
        items = [r.definition() for r in self.resources.values()]
        return paginate(items, "resources", request.params.get("cursor"), self.page_size)

    async def _list_templates(self, request: ServerRequest) -> dict[str, Any]:
        items = [t.definition() for t in self.templates.values()]
        return paginate(items, "resourceTemplates", request.params.get("cursor"),
                        self.page_size)

    async def _list_prompts(self, request: ServerRequest) -> dict[str, Any]:
        items = [p.definition() for p in self.prompts.values()]
        return paginate(items, "prompts", request.params.get("cursor"), self.page_size)

    # -- tools ---------------------------------------------------------------------------

    async def _call_tool(self, request: ServerRequest) -> dict[str, Any]:
        name = request.params.get("name")
        if not isinstance(name, str):
            raise InvalidParams('tools/call needs "name" (a string)')
        tool = self.tools.get(name)
        if tool is None:
            raise InvalidParams(f"unknown tool {name!r}", data={"name": name})
        arguments = request.params.get("arguments")
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, dict):
            raise InvalidParams('"arguments" must be an object')
        if self.tasks.wants_task(request, tool):
            return await self.tasks.start_tool_call(
                request, lambda provider: self._execute_tool(request, tool, arguments, provider)
            )
        return await self._execute_tool(request, tool, arguments)

    async def _execute_tool(
        self,
        request: ServerRequest,
        tool: Tool,
        arguments: dict[str, Any],
        input_provider: InputProvider | None = None,
    ) -> dict[str, Any]:
        """Validate the arguments and run the tool (inside a task with `input_provider`)."""
        name = tool.name
        errors = tool.argument_errors(arguments)
        if errors:
            text = f"invalid arguments for tool {name!r}: " + "; ".join(errors[:10])
            return ToolResult([{"type": "text", "text": text}], is_error=True).to_dict()

        async def run(context: Context) -> dict[str, Any]:
            try:
                return await tool.invoke(arguments, context)
            except (InputRequired, MCPError, asyncio.CancelledError):
                raise
            except Exception as exc:
                logger.exception("tool %s failed", name)
                return ToolResult([{"type": "text", "text": f"tool {name!r} failed: {exc}"}],
                                  is_error=True).to_dict()

        try:
            if input_provider is not None:
                return await run(Context(self, request, input_provider=input_provider))
            return await self._with_inputs(request, run)
        except MissingRequiredClientCapability as exc:
            if request.era is Era.MODERN:
                raise
            return ToolResult([{"type": "text", "text": exc.message}], is_error=True).to_dict()

    # -- resources -----------------------------------------------------------------------

    async def _read_resource(self, request: ServerRequest) -> dict[str, Any]:
        uri = required_uri(request)
        resource = self.resources.get(uri)
        if resource is not None:
            fn, kwargs, mime, param = resource.fn, {}, resource.mime_type, resource.context_param
        else:
            for template in self.templates.values():
                variables = template.match(uri)
                if variables is not None:
                    fn, kwargs, mime = template.fn, variables, template.mime_type
                    param = template.context_param
                    break
            else:
                message = f"resource {uri!r} not found"
                if request.era is Era.MODERN:
                    raise InvalidParams(message, data={"uri": uri})
                raise ResourceNotFound(message, data={"uri": uri})

        async def run(context: Context) -> dict[str, Any]:
            return {"contents": to_contents(uri, await call_handler(fn, kwargs, param, context),
                                            mime)}

        return await self._with_inputs(request, run)

    async def _subscribe(self, request: ServerRequest) -> dict[str, Any]:
        uri = required_uri(request)
        if request.connection is not None:
            request.connection.subscriptions.add(uri)
        return {}

    async def _unsubscribe(self, request: ServerRequest) -> dict[str, Any]:
        uri = required_uri(request)
        if request.connection is not None:
            request.connection.subscriptions.discard(uri)
        return {}

    async def _listen(self, request: ServerRequest) -> dict[str, Any]:
        wanted = request.params.get("notifications")
        if not isinstance(wanted, dict):
            raise InvalidParams('subscriptions/listen needs "notifications" (an object)')
        caps = self.capabilities(Era.MODERN)
        available = {kind for kind in ("tools", "prompts", "resources") if kind in caps}
        if "resources" in caps:
            available.add("subscribe")
        return await self.subscribers.listen(request.incoming, wanted, available)

    # -- prompts, completion, logging ----------------------------------------------------

    async def _get_prompt(self, request: ServerRequest) -> dict[str, Any]:
        name = request.params.get("name")
        prompt = self.prompts.get(name) if isinstance(name, str) else None
        if prompt is None:
            raise InvalidParams(f"unknown prompt {name!r}", data={"name": name})
        arguments = request.params.get("arguments") or {}
        if not isinstance(arguments, dict):
            raise InvalidParams('"arguments" must be an object of strings')
        checked = prompt.check_arguments(arguments)

        async def run(context: Context) -> dict[str, Any]:
            returned = await call_handler(prompt.fn, checked, prompt.context_param, context)
            return to_prompt_result(returned, prompt.description)

        return await self._with_inputs(request, run)

    async def _complete(self, request: ServerRequest) -> dict[str, Any]:
        if self.completion_handler is None:
            raise MethodNotFound("this server offers no completions")
        ref = request.params.get("ref")
        argument = request.params.get("argument")
        if not isinstance(ref, dict) or not isinstance(argument, dict):
            raise InvalidParams('completion/complete needs "ref" and "argument" objects')
        context = request.params.get("context") or {}
        returned = await self.completion_handler(ref, argument, context.get("arguments") or {})
        if isinstance(returned, dict):
            completion = returned
        else:
            values = list(returned or [])
            completion = {"values": values[:100], "total": len(values),
                          "hasMore": len(values) > 100}
        return {"completion": completion}


def required_uri(request: ServerRequest) -> str:
    """The request's `uri` parameter (-32602 unless it is a string)."""
    uri = request.params.get("uri")
    if not isinstance(uri, str):
        raise InvalidParams(f'{request.method} needs "uri" (a string)')
    return uri


async def set_log_level(request: ServerRequest) -> dict[str, Any]:
    """`logging/setLevel`: the level the client's connection gets log messages from."""
    level = request.params.get("level")
    if level not in LOG_LEVELS:
        raise InvalidParams(f"level must be one of {', '.join(LOG_LEVELS)}")
    if request.connection is not None:
        request.connection.log_level = level
    return {}
