"""`PolicyDenied`: the policy refused a call the principal may know about.

Code -32003, in JSON-RPC's implementation-defined server range (-32000..-32099). MCP uses
-32002 and -32020..-32022 and -32042 there, and SDKs use -32000 and -32001 locally (connection
closed, request timeout), so -32003 ("forbidden", as HTTP 403) stays clear of all of them. A
client that does not know it still reads an error with a message and `data`.

A target the principal may not see at all is never refused with this error: it is answered
exactly as an unknown name is, so a refusal reveals nothing (see `stage`).
"""

from __future__ import annotations

from bastion.guard.policy.engine import Decision
from bastion.protocol.errors import MCPError

POLICY_DENIED = -32003


class PolicyDenied(MCPError):
    """`method` on `decision.target` was refused by `decision.rule` for `decision.reason`."""

    code = POLICY_DENIED

    def __init__(self, method: str, decision: Decision) -> None:
        name = decision.target.name
        super().__init__(
            f"{method} of {name!r} denied by rule {decision.rule!r}: {decision.reason} (the "
            "gateway's policy: the same call will be refused again)",
            data={"rule": decision.rule, "reason": decision.reason, "target": name})
        self.decision = decision
