"""Versions, eras, legacy negotiation, and the per-version method catalogue."""

from __future__ import annotations

import itertools
from functools import cache

import pytest

from bastion.protocol.methods import (
    CACHEABLE_METHODS,
    MODERN_TASK_REQUESTS,
    MRTR_METHODS,
    PAGINATED_METHODS,
    TASKS_EXTENSION,
    notifications_from_client,
    notifications_from_server,
    requests_from_client,
    requests_from_server,
)
from bastion.protocol.versions import (
    ALL_VERSIONS,
    DEFAULT_LEGACY_HTTP_VERSION,
    LATEST_LEGACY,
    LATEST_MODERN,
    LEGACY_VERSIONS,
    MODERN_VERSIONS,
    Era,
    allows_batches,
    at_least,
    era_of,
    negotiate_legacy,
)
from tests import schema_check

CATALOGUE = (requests_from_client, notifications_from_client, requests_from_server,
             notifications_from_server)

# --------------------------------------------------------------------------------------------
# Versions and eras
# --------------------------------------------------------------------------------------------


def test_version_lists():
    assert LEGACY_VERSIONS == ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")
    assert MODERN_VERSIONS == ("2026-07-28",)
    assert ALL_VERSIONS == LEGACY_VERSIONS + MODERN_VERSIONS
    assert list(ALL_VERSIONS) == sorted(ALL_VERSIONS)
    assert len(set(ALL_VERSIONS)) == len(ALL_VERSIONS)
    assert LATEST_LEGACY == "2025-11-25"
    assert LATEST_MODERN == "2026-07-28"
    assert DEFAULT_LEGACY_HTTP_VERSION == "2025-03-26"
    assert DEFAULT_LEGACY_HTTP_VERSION in LEGACY_VERSIONS


def test_era_values():
    assert Era.LEGACY == "legacy"
    assert Era.MODERN == "modern"
    assert str(Era.MODERN) == "modern"


@pytest.mark.parametrize("version", LEGACY_VERSIONS)
def test_legacy_versions_are_legacy(version):
    assert era_of(version) is Era.LEGACY


def test_modern_version_is_modern():
    assert era_of("2026-07-28") is Era.MODERN


@pytest.mark.parametrize("version", ["", "2024-11-04", "2026-07-29", "draft", "1.0.0",
                                     "2025-11-25 "])
def test_unknown_version_has_no_era(version):
    with pytest.raises(ValueError, match="unknown MCP protocol version"):
        era_of(version)


@pytest.mark.parametrize("version", LEGACY_VERSIONS)
def test_negotiation_echoes_a_supported_version(version):
    assert negotiate_legacy(version) == version


@pytest.mark.parametrize("requested", ["2026-07-28", "2024-01-01", "2099-12-31", "1.0.0", "",
                                       None, 20251125, ["2025-11-25"], {"v": "2025-11-25"}])
def test_negotiation_otherwise_offers_the_latest(requested):
    assert negotiate_legacy(requested) == LATEST_LEGACY


def test_negotiation_with_a_restricted_set():
    supported = ("2025-03-26", "2025-06-18")
    assert negotiate_legacy("2025-03-26", supported) == "2025-03-26"
    assert negotiate_legacy("2025-11-25", supported) == "2025-06-18"
    assert negotiate_legacy("2024-11-05", supported) == "2025-06-18"


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_batches_only_in_2025_03_26(version):
    assert allows_batches(version) is (version == "2025-03-26")


def test_at_least():
    assert at_least("2025-11-25", "2025-06-18")
    assert at_least("2025-06-18", "2025-06-18")
    assert not at_least("2025-03-26", "2025-06-18")
    assert at_least("2026-07-28", "2025-11-25")


# --------------------------------------------------------------------------------------------
# Method catalogue: hand-picked facts from the spec
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", LEGACY_VERSIONS)
def test_legacy_handshake_methods(version):
    assert "initialize" in requests_from_client(version)
    assert "ping" in requests_from_client(version)
    assert "ping" in requests_from_server(version)
    assert "notifications/initialized" in notifications_from_client(version)
    assert "logging/setLevel" in requests_from_client(version)
    assert {"resources/subscribe", "resources/unsubscribe"} <= requests_from_client(version)
    assert {"sampling/createMessage", "roots/list"} <= requests_from_server(version)
    assert "server/discover" not in requests_from_client(version)
    assert "subscriptions/listen" not in requests_from_client(version)


def test_modern_has_no_handshake_and_no_removed_methods():
    client = requests_from_client("2026-07-28")
    for removed in ("initialize", "ping", "logging/setLevel", "resources/subscribe",
                    "resources/unsubscribe", "tasks/get", "tasks/result", "tasks/list",
                    "tasks/cancel"):
        assert removed not in client, removed
    assert {"server/discover", "subscriptions/listen"} <= client
    notifications = notifications_from_client("2026-07-28")
    assert notifications == frozenset({"notifications/cancelled"})
    assert "notifications/initialized" not in notifications
    assert "notifications/roots/list_changed" not in notifications


def test_no_server_requests_in_the_modern_era():
    assert requests_from_server("2026-07-28") == frozenset()


def test_modern_server_notifications():
    notifications = notifications_from_server("2026-07-28")
    assert "notifications/subscriptions/acknowledged" in notifications
    assert "notifications/elicitation/complete" not in notifications
    assert "notifications/tasks/status" not in notifications


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_elicitation_only_from_2025_06_18_to_the_last_legacy(version):
    expected = version in ("2025-06-18", "2025-11-25")
    assert ("elicitation/create" in requests_from_server(version)) is expected


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_core_tasks_only_in_2025_11_25(version):
    tasks = {"tasks/get", "tasks/result", "tasks/cancel", "tasks/list"}
    in_version = version == "2025-11-25"
    assert (tasks <= requests_from_client(version)) is in_version
    assert (tasks <= requests_from_server(version)) is in_version
    assert not (tasks & requests_from_client(version)) or in_version
    assert ("notifications/tasks/status" in notifications_from_client(version)) is in_version
    assert ("notifications/tasks/status" in notifications_from_server(version)) is in_version
    assert ("notifications/elicitation/complete" in notifications_from_server(version)) is \
        in_version


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_every_version_has_the_common_features(version):
    common = {"tools/list", "tools/call", "prompts/list", "prompts/get", "resources/list",
              "resources/read", "resources/templates/list", "completion/complete"}
    assert common <= requests_from_client(version)
    assert {"notifications/progress", "notifications/message",
            "notifications/tools/list_changed"} <= notifications_from_server(version)


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_catalogue_returns_frozensets_and_is_cached(version):
    for catalogue in CATALOGUE:
        first = catalogue(version)
        assert isinstance(first, frozenset)
        assert catalogue(version) is first


@pytest.mark.parametrize("catalogue", CATALOGUE)
@pytest.mark.parametrize("version", ["", "2024-01-01", "2026-07-29", "latest"])
def test_catalogue_refuses_unknown_versions(catalogue, version):
    with pytest.raises(ValueError, match="unknown MCP protocol version"):
        catalogue(version)


def test_legacy_catalogue_only_grows():
    for earlier, later in itertools.pairwise(LEGACY_VERSIONS):
        for catalogue in CATALOGUE:
            assert catalogue(earlier) <= catalogue(later), (catalogue.__name__, later)


def test_method_groups():
    modern = requests_from_client("2026-07-28")
    assert frozenset({"tools/call", "prompts/get", "resources/read"}) == MRTR_METHODS
    assert modern >= MRTR_METHODS
    assert modern >= CACHEABLE_METHODS
    assert "server/discover" in CACHEABLE_METHODS
    assert "tools/call" not in CACHEABLE_METHODS
    assert PAGINATED_METHODS - {"tasks/list"} <= modern
    assert "tasks/list" in requests_from_client("2025-11-25")
    assert frozenset({"tasks/get", "tasks/update", "tasks/cancel"}) == MODERN_TASK_REQUESTS
    assert not (MODERN_TASK_REQUESTS & modern)
    assert TASKS_EXTENSION == "io.modelcontextprotocol/tasks"
    assert "notifications/tasks" in notifications_from_server("2026-07-28")


# --------------------------------------------------------------------------------------------
# Method catalogue against the official schemas
# --------------------------------------------------------------------------------------------


@cache
def _schema_methods(version: str, union: str) -> frozenset[str]:
    """The method names of a union def (ClientRequest, ServerNotification, ...)."""
    root = schema_check.load_schema(version)
    defs = root["$defs"]
    if union not in defs:
        return frozenset()
    node = defs[union]
    members = [ref["$ref"].rsplit("/", 1)[-1] for ref in node.get("anyOf", [])] or [union]
    names = set()
    for member in members:
        method = defs[member].get("properties", {}).get("method", {}).get("const")
        assert method, f"{version} {union}: member {member} has no method const"
        names.add(method)
    return frozenset(names)


UNIONS = [
    ("ClientRequest", requests_from_client),
    ("ClientNotification", notifications_from_client),
    ("ServerRequest", requests_from_server),
    ("ServerNotification", notifications_from_server),
]


@pytest.mark.parametrize(("union", "catalogue"), UNIONS)
def test_2025_11_25_catalogue_is_exactly_the_schema(union, catalogue):
    assert catalogue("2025-11-25") == _schema_methods("2025-11-25", union)


@pytest.mark.parametrize(("union", "catalogue"), UNIONS)
def test_2026_07_28_catalogue_is_the_schema_plus_the_tasks_extension(union, catalogue):
    from_schema = _schema_methods("2026-07-28", union)
    ours = catalogue("2026-07-28")
    assert from_schema <= ours
    # notifications/tasks comes from the tasks extension, which is not in the core schema.
    assert ours - from_schema <= {"notifications/tasks"}


def test_modern_schema_has_no_server_requests():
    assert "ServerRequest" not in schema_check.load_schema("2026-07-28")["$defs"]


def test_mrtr_input_requests_are_the_legacy_server_requests():
    defs = schema_check.load_schema("2026-07-28")["$defs"]
    input_methods = {
        defs[ref["$ref"].rsplit("/", 1)[-1]]["properties"]["method"]["const"]
        for ref in defs["InputRequest"]["anyOf"]
    }
    assert input_methods == requests_from_server("2025-11-25") - {
        "ping", "tasks/get", "tasks/result", "tasks/cancel", "tasks/list"}

