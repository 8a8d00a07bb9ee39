"""Queries over stored audit records: the filters of `bastion audit show|tail|export`.

`RecordQuery` holds the filters (principal, agent, upstream, tool, status, time window,
instance) and an order; `sqlite_select` and `postgres_select` turn it into one parameterised
SELECT for each backend (the JSON paths are fixed here; user values are only ever bound
parameters). Records of other or older shapes simply lack the keys: they match no filter on
those keys and are shown with blanks. `parse_time` reads `--since`/`--until`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

#: The most records one query returns; exports page through larger sets.
MAX_LIMIT = 1_000_000
_DURATION = re.compile(r"(\d{1,9})\s*([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}

#: Filter name -> path inside the stored body (`{"instance", "record", "seq"}`).
FIELDS: dict[str, tuple[str, ...]] = {
    "sub": ("record", "principal", "sub"),
    "agent": ("record", "principal", "client_id"),
    "upstream": ("record", "upstream"),
    "tool": ("record", "target"),
    "status": ("record", "status"),
}
_TIME = ("record", "time")


class AuditQueryError(ValueError):
    """A filter value cannot be used (bad time, bad limit)."""


def parse_time(text: str, now: float) -> float:
    """Epoch seconds from a duration back from `now` (`90s`, `30m`, `1h`, `2d`, `1w`) or an
    ISO 8601 time (UTC when it names no zone); AuditQueryError otherwise."""
    value = text.strip()
    match = _DURATION.fullmatch(value.lower())
    if match is not None:
        return now - int(match.group(1)) * _UNITS[match.group(2)]
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise AuditQueryError(f"{text!r} is neither a duration (such as 30m, 1h, 2d) nor an "
                              "ISO time (such as 2026-01-31T12:00:00Z)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


@dataclass(frozen=True, slots=True)
class RecordQuery:
    """Which records, in which order, how many."""

    sub: str | None = None
    agent: str | None = None
    upstream: str | None = None
    tool: str | None = None
    status: str | None = None
    since: float | None = None
    until: float | None = None
    instance: str | None = None
    #: Only records after this (instance, seq), for paging in `key` order.
    after: tuple[str, int] | None = None
    #: `newest`: latest record time first; `key`: by instance, then seq (exports, follow);
    #: `key_desc`: by instance, then latest seq first.
    order: Literal["newest", "key", "key_desc"] = "newest"
    limit: int = 100

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= MAX_LIMIT:
            raise AuditQueryError(f"limit must be 1 to {MAX_LIMIT}, not {self.limit}")
        if self.since is not None and self.until is not None and self.since > self.until:
            raise AuditQueryError("--since is after --until: nothing can match")

    def filters(self) -> dict[str, str]:
        """The JSON field filters that are set."""
        return {name: value for name in FIELDS
                if (value := getattr(self, name)) is not None}


def _path_value(value: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """One stored record: where it is in its chain, its hash, and the logged JSON object."""

    instance: str
    seq: int
    hash: bytes
    record: dict[str, Any]

    @classmethod
    def from_row(cls, instance: str, seq: int, digest: bytes, body: bytes) -> StoredRecord:
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            parsed = None
        record = parsed.get("record") if isinstance(parsed, dict) else None
        return cls(instance, int(seq), bytes(digest), record if isinstance(record, dict) else {})

    def get(self, *path: str) -> Any:
        """The value at `path` in the record, or None where any step is missing."""
        return _path_value(self.record, path)

    def text(self, *path: str) -> str | None:
        """The value at `path` as text (None when absent or not a scalar)."""
        value = self.get(*path)
        if value is None or isinstance(value, dict | list):
            return None
        return value if isinstance(value, str) else orjson.dumps(value).decode()

    @property
    def time(self) -> float | None:
        value = self.get("time")
        return float(value) if isinstance(value, int | float) and not isinstance(
            value, bool) else None


def _select(request: RecordQuery, base: str, field: Callable[[tuple[str, ...]], str],
            time: str, placeholder: Callable[[int], str], nulls_last: str
            ) -> tuple[str, list[object]]:
    conditions: list[str] = []
    parameters: list[object] = []

    def bind(value: object) -> str:
        parameters.append(value)
        return placeholder(len(parameters))

    if request.instance is not None:
        conditions.append(f"instance = {bind(request.instance)}")
    if request.after is not None:
        conditions.append(f"(instance, seq) > ({bind(request.after[0])}, "
                          f"{bind(request.after[1])})")
    for name, value in request.filters().items():
        conditions.append(f"{field(FIELDS[name])} = {bind(value)}")
    if request.since is not None:
        conditions.append(f"{time} >= {bind(request.since)}")
    if request.until is not None:
        conditions.append(f"{time} <= {bind(request.until)}")
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    order = {"key": "instance, seq", "key_desc": "instance, seq DESC",
             "newest": f"{time} DESC{nulls_last}, instance, seq DESC"}[request.order]
    return f"{base}{where} ORDER BY {order} LIMIT {bind(request.limit)}", parameters


def sqlite_select(request: RecordQuery) -> tuple[str, list[object]]:
    """The SQLite SELECT (instance, seq, hash, body) for `request`, and its parameters."""
    def field(path: tuple[str, ...]) -> str:
        return f"json_extract(CAST(body AS TEXT), '$.{'.'.join(path)}')"

    # Only a JSON number is a time: a string would sort above every number in SQLite.
    time = (f"(CASE WHEN json_type(CAST(body AS TEXT), '$.{'.'.join(_TIME)}') "
            f"IN ('integer', 'real') THEN {field(_TIME)} END)")
    return _select(request, "SELECT instance, seq, hash, body FROM records", field, time,
                   lambda _: "?", "")


def postgres_select(request: RecordQuery) -> tuple[str, list[object]]:
    """The PostgreSQL SELECT (instance, seq, hash, body) for `request`, and its parameters."""
    def field(path: tuple[str, ...]) -> str:
        return f"(j #>> '{{{','.join(path)}}}')"

    time = ("(CASE WHEN jsonb_typeof(j #> '{record,time}') = 'number' "
            "THEN (j #>> '{record,time}')::float8 END)")
    base = ("SELECT instance, seq, hash, body FROM (SELECT instance, seq, hash, body, "
            "convert_from(body, 'UTF8')::jsonb AS j FROM records) AS r")
    return _select(request, base, field, time, lambda n: f"${n}", " NULLS LAST")
