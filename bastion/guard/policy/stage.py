"""The `policy` guard stage: the policy engine on every call and every list.

- `tools/call`, `prompts/get`, `resources/read`: the call is decided with its arguments.
- `completion/complete`, `resources/subscribe`, `subscriptions/listen`: they reveal only what a
  list would (argument values, change notifications), so they need the target to be visible.
- `tools/list` and the other lists: items the principal may not see are left out.

A refusal of a target the principal may not see is the gateway's own "unknown name" error
(`Gateway.unknown`), so a caller cannot tell a hidden tool from a missing one; a refusal of a
visible target is `PolicyDenied`, naming the rule and the reason. The decision stays in
`call.notes["policy"]` for the audit record.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from bastion.config.policy import PolicyConfig
from bastion.guard.pipeline import Call, Stage
from bastion.guard.policy.engine import PolicyEngine
from bastion.guard.policy.errors import PolicyDenied
from bastion.guard.policy.rules import Target
from bastion.protocol.errors import InternalError, InvalidParams, ResourceNotFound
from bastion.protocol.principal import ANONYMOUS, Principal
from bastion.protocol.versions import Era

logger = logging.getLogger("bastion.guard.policy")

#: Builds the error for a name nobody offers: (kind, name, *, era) -> exception.
Unknown = Callable[..., Exception]
#: The list keys `filter_list` gets, and the catalogue kind of their items.
_LIST_KINDS = {"tools": ("tool", "name"), "prompts": ("prompt", "name"),
               "resources": ("resource", "uri"), "resourceTemplates": ("template", "uriTemplate")}
_CALLS = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}


def target_of(entry: Any, name: str | None = None) -> Target:
    """The policy target of a catalogue `Entry`; `name` is the URI a client read when the
    entry is the template that serves it."""
    if entry.kind == "template" and name is not None and name != entry.key:
        return Target("resource", name, entry.upstream, entry.definition, template=entry.key)
    return Target(entry.kind, entry.key, entry.upstream, entry.definition)


def _unknown_name(kind: str, name: str, *, era: Era) -> Exception:
    # The spec's errors, as Gateway.unknown words them (used when the context has none).
    if kind == "resource":
        error = InvalidParams if era is Era.MODERN else ResourceNotFound
        return error(f"resource {name!r} not found", data={"uri": name})
    return InvalidParams(f"unknown {kind} {name!r}", data={"name": name})


class PolicyStage(Stage):
    """Enforce `engine` on requests and lists (see the module doc)."""

    name = "policy"

    def __init__(self, engine: PolicyEngine, *, catalog: Any = None,
                 unknown: Unknown | None = None) -> None:
        self.engine = engine
        #: The gateway's catalogue: who owns a listed item, which entry a URI names.
        self.catalog = catalog
        self.unknown = unknown or _unknown_name

    async def check_request(self, call: Call) -> None:
        method = call.method
        if method in _CALLS:
            name = call.params.get(_CALLS[method])
            target = target_of(self._entry(call), name if isinstance(name, str) else None)
            arguments = call.params.get("arguments")
            self._enforce(call, target, arguments if isinstance(arguments, dict) else {},
                          "resource" if method == "resources/read" else target.kind,
                          target.name, call.request.era)
        elif method == "completion/complete":
            ref = call.params.get("ref")
            ref = ref if isinstance(ref, dict) else {}
            is_prompt = ref.get("type") == "ref/prompt"
            name = ref.get("name") if is_prompt else ref.get("uri")
            self._enforce(call, target_of(self._entry(call)), None,
                          "prompt" if is_prompt else "resource", str(name), call.request.era)
        elif method == "resources/subscribe":
            self._visible_uris(call, [call.params.get("uri")])
        elif method == "subscriptions/listen":
            wanted = call.params.get("notifications")
            uris = wanted.get("resourceSubscriptions") if isinstance(wanted, dict) else None
            self._visible_uris(call, uris if isinstance(uris, list) else [])

    def filter_list(self, call: Call, kind: str, items: list[dict[str, Any]]
                    ) -> list[dict[str, Any]]:
        target_kind, key = _LIST_KINDS[kind]
        lookup = getattr(self.catalog, target_kind, None) if self.catalog is not None else None
        if lookup is None:
            logger.error("policy: no catalogue to find the owners of listed %s; listing none",
                         kind)
            return []
        principal = principal_of(call)
        decide = self.engine.decide
        kept = []
        for item in items:
            entry = lookup(item.get(key))
            # An item the catalogue cannot place is not shown: fail closed.
            if entry is not None and decide(principal, target_of(entry), None).visible:
                kept.append(item)
        return kept

    # -- internals ---------------------------------------------------------------------------

    def _entry(self, call: Call) -> Any:
        if call.target is None:
            # The gateway resolves the target before the guard runs; without one, refuse.
            raise InternalError(f"the policy cannot decide {call.method} without its target; "
                                "this is a gateway bug, please report it")
        return call.target

    def _enforce(self, call: Call, target: Target, arguments: dict[str, Any] | None,
                 unknown_kind: str, unknown_name: str, era: Era) -> None:
        decision = self.engine.decide(principal_of(call), target, arguments)
        call.notes["policy"] = decision
        if decision.allowed:
            return
        if not decision.visible:
            raise self.unknown(unknown_kind, unknown_name, era=era)
        raise PolicyDenied(call.method, decision)

    def _visible_uris(self, call: Call, uris: list[Any]) -> None:
        if self.catalog is None:
            return
        principal = principal_of(call)
        for uri in uris:
            entry = self.catalog.resource(uri) if isinstance(uri, str) else None
            if entry is not None and not self.engine.decide(
                    principal, target_of(entry, uri), None).visible:
                # The gateway answers an unknown subscription URI in legacy wording in both
                # eras (FanIn._acquire); a hidden one must read the same.
                raise self.unknown("resource", uri, era=Era.LEGACY)


class PolicyOff(Stage):
    """The stage when there is nothing to enforce (no policy, no authentication): it
    overrides no hook, so the pipeline never calls it."""

    name = "policy"


def principal_of(call: Call) -> Principal:
    """The call's principal (anonymous when no one was authenticated)."""
    principal = call.principal
    return principal if isinstance(principal, Principal) else ANONYMOUS


def policy_stage(context: Any) -> Stage:
    """The factory the stage registry uses: `context.config.policy` (absent: an empty policy)
    and `context.config.auth.mode` pick the engine; `context.catalog` and `context.unknown`
    (the gateway's) serve lists and hidden-name errors."""
    config = getattr(context, "config", None)
    policy = getattr(config, "policy", None) or PolicyConfig()
    auth = getattr(config, "auth", None)
    auth_mode = getattr(auth, "mode", "none") if auth is not None else "none"
    default = policy.effective_default(auth_mode)
    if not policy.rules and default == "allow":
        return PolicyOff()
    if not policy.rules:
        logger.warning("policy: no rules and the default is deny: every tool, prompt and "
                       "resource is hidden; add rules under policy.rules")
    return PolicyStage(PolicyEngine(policy, default=default),
                       catalog=getattr(context, "catalog", None),
                       unknown=getattr(context, "unknown", None))
