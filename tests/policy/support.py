"""Small builders shared by the policy tests: policies, principals and targets."""

from __future__ import annotations

from typing import Any

from bastion.config.policy import PolicyConfig
from bastion.guard.policy import PolicyEngine, Target
from bastion.protocol.principal import Principal


def policy(rules: list[dict[str, Any]], **fields: Any) -> PolicyConfig:
    return PolicyConfig.model_validate({"rules": rules, **fields})


def engine(rules: list[dict[str, Any]], default: str = "deny", **fields: Any) -> PolicyEngine:
    return PolicyEngine(policy(rules, **fields), default=default)  # type: ignore[arg-type]


def person(subject: str, *roles: str, groups: tuple[str, ...] = (), client: str | None = None,
           **attributes: Any) -> Principal:
    return Principal(subject=subject, issuer="https://idp.example", method="jwt",
                     client_id=client, roles=frozenset(roles), groups=frozenset(groups),
                     attributes=attributes)


def tool(name: str, upstream: str | None = None, title: str | None = None,
         **annotations: Any) -> Target:
    """A tool target; the upstream defaults to the part before `__`."""
    definition: dict[str, Any] = {"name": name, "inputSchema": {"type": "object"}}
    if annotations:
        definition["annotations"] = annotations
    if title is not None:
        definition["title"] = title
    return Target("tool", name, upstream or name.split("__")[0], definition)


ALICE = person("alice", "analyst")
BOB = person("bob", "responder")
MALLORY = person("mallory")
