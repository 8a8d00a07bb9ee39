"""The gateway catalogue: prefixing, merge order, collisions, routing, pagination, bad input."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bastion.gateway.catalog import Catalog, Collision, Entry, split_name
from bastion.protocol.errors import InvalidParams

SCHEMA = {"type": "object"}


def tool(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "inputSchema": SCHEMA, **extra}


def names(items: list[dict[str, Any]]) -> list[str]:
    return [item["name"] for item in items]


# -- prefixing -------------------------------------------------------------------------------


def test_default_custom_and_empty_prefixes_name_tools_and_prompts():
    catalog = Catalog(["time", "files", "raw"])
    catalog.update("time", "time__", tools=[tool("now")], prompts=[{"name": "greet"}])
    catalog.update("files", "fs.", tools=[tool("read")])
    catalog.update("raw", "", tools=[tool("echo")])
    assert names(catalog.tools()) == ["echo", "fs.read", "time__now"]
    assert names(catalog.prompts()) == ["time__greet"]
    entry = catalog.tool("time__now")
    assert entry == Entry("tool", "time__now", "time", "now", tool("time__now"))
    assert catalog.tool("fs.read").original == "read"
    assert catalog.tool("echo").upstream == "raw"
    assert catalog.prompt("time__greet").original == "greet"
    assert catalog.tool("now") is None and catalog.prompt("greet") is None


def test_definitions_are_shallow_copies_that_keep_unknown_fields():
    upstream_tool = tool("now", annotations={"readOnlyHint": True}, futureField=[1, 2])
    catalog = Catalog(["time"])
    catalog.update("time", "time__", tools=[upstream_tool])
    listed = catalog.tools()[0]
    assert listed == {**upstream_tool, "name": "time__now"}
    assert upstream_tool["name"] == "now"  # the upstream's dict is not touched
    assert listed["annotations"] is upstream_tool["annotations"]


def test_resources_and_templates_keep_their_uri_but_get_a_prefixed_name():
    catalog = Catalog(["docs"])
    catalog.update("docs", "docs__", resources=[{"uri": "file:///a", "name": "a"}],
                   templates=[{"uriTemplate": "file:///{+path}", "name": "file"}])
    assert catalog.resources() == [{"uri": "file:///a", "name": "docs__a"}]
    assert catalog.templates() == [{"uriTemplate": "file:///{+path}", "name": "docs__file"}]
    assert catalog.resource("file:///a").key == "file:///a"
    assert catalog.template("file:///{+path}").original == "file:///{+path}"


def test_changing_the_prefix_renames_every_kind_already_held():
    catalog = Catalog(["time"])
    catalog.update("time", "time__", tools=[tool("now")], prompts=[{"name": "p"}])
    assert catalog.update("time", "t_") == {"tool", "prompt"}
    assert names(catalog.tools()) == ["t_now"] and names(catalog.prompts()) == ["t_p"]
    assert catalog.tool("time__now") is None and catalog.tool("t_now").original == "now"


def test_split_name():
    assert split_name("time__now", "time__") == "now"
    assert split_name("now", "") == "now"
    assert split_name("files__read", "time__") is None
    assert split_name("time__", "time__") is None
    assert split_name(None, "x") is None  # type: ignore[arg-type]


# -- order and caching -----------------------------------------------------------------------


def test_order_is_sorted_and_independent_of_update_order():
    def fill(sequence: list[str]) -> Catalog:
        catalog = Catalog(["b", "a", "c"])
        for upstream in sequence:
            catalog.update(upstream, "", tools=[tool(f"{upstream}{n}") for n in (3, 1, 2)],
                           resources=[{"uri": f"x://{upstream}/{n}", "name": "r"}
                                      for n in (2, 1)])
        return catalog

    first, second = fill(["a", "b", "c"]), fill(["c", "a", "b"])
    assert first.tools() == second.tools() and first.resources() == second.resources()
    assert names(first.tools()) == sorted(names(first.tools()))
    assert [r["uri"] for r in first.resources()] == sorted(r["uri"] for r in first.resources())


def test_lists_are_cached_until_a_visible_change():
    catalog = Catalog(["a"])
    catalog.update("a", "a__", tools=[tool("x")])
    listed, version = catalog.tools(), catalog.version
    assert catalog.tools() is listed
    assert catalog.update("a", "a__", tools=[tool("x")]) == set()  # same content, new dicts
    assert catalog.tools() is listed and catalog.version == version
    assert catalog.update("a", "a__", tools=[tool("x", description="new")]) == {"tool"}
    assert catalog.tools() is not listed and catalog.version == version + 1
    assert catalog.tools()[0]["description"] == "new"


def test_update_reports_only_the_kinds_that_changed():
    catalog = Catalog(["a", "b"])
    assert catalog.update("a", "a__", tools=[tool("x")], prompts=[{"name": "p"}]) == {
        "tool", "prompt"}
    assert catalog.update("b", "b__", tools=[tool("y")]) == {"tool"}  # not "prompt"
    assert catalog.update("b", "b__", tools=[tool("y")], prompts=[]) == set()
    assert catalog.update("a", "a__", prompts=[]) == {"prompt"}
    assert names(catalog.tools()) == ["a__x", "b__y"]  # None left a's tools alone
    assert catalog.update("a", "a__", resources=[{"uri": "u://1", "name": "r"}],
                          templates=[{"uriTemplate": "u://{id}", "name": "t"}]) == {
        "resource", "template"}
    assert catalog.remove("a") == {"tool", "resource", "template"}
    assert catalog.remove("a") == set() and catalog.remove("never") == set()


# -- collisions ------------------------------------------------------------------------------


def test_same_tool_name_with_empty_prefixes_first_in_order_wins(caplog):
    catalog = Catalog(["first", "second"])
    catalog.update("second", "", tools=[tool("search", description="second")])
    with caplog.at_level(logging.WARNING, logger="bastion.gateway.catalog"):
        assert catalog.update("first", "", tools=[tool("search", description="first")]) == {
            "tool"}
        catalog.update("first", "", tools=[tool("search", description="first")])
    assert catalog.tools() == [tool("search", description="first")]
    assert catalog.tool("search").upstream == "first"
    assert catalog.collisions() == [Collision("tool", "search", ("first", "second"), "first")]
    logged = [r.getMessage() for r in caplog.records if "offered by" in r.getMessage()]
    assert len(logged) == 1  # a collision is logged when new, not on every update
    assert "'search'" in logged[0] and "'first'" in logged[0] and "'second'" in logged[0]

    assert catalog.remove("first") == {"tool"}
    assert catalog.tool("search").upstream == "second"
    assert catalog.tools() == [tool("search", description="second")]
    assert catalog.collisions() == []


def test_same_resource_uri_on_two_upstreams():
    catalog = Catalog(["a", "b"])
    catalog.update("b", "b__", resources=[{"uri": "mem://shared", "name": "s"}])
    assert catalog.update("a", "a__", resources=[{"uri": "mem://shared", "name": "s"}]) == {
        "resource"}
    assert catalog.resources() == [{"uri": "mem://shared", "name": "a__s"}]
    assert catalog.resource("mem://shared").upstream == "a"
    assert catalog.collisions() == [Collision("resource", "mem://shared", ("a", "b"), "a")]
    # The loser dropping it changes nothing anyone sees.
    assert catalog.update("b", "b__", resources=[]) == set()
    assert catalog.collisions() == []
    assert catalog.update("a", "a__", resources=[]) == {"resource"}
    assert catalog.resource("mem://shared") is None


def test_identical_definitions_changing_owner_is_not_a_visible_change():
    catalog = Catalog(["a", "b"])
    catalog.update("a", "", tools=[tool("same")])
    catalog.update("b", "", tools=[tool("same")])
    assert catalog.remove("a") == set()
    assert catalog.tool("same").upstream == "b"
    assert catalog.tools()[0] is catalog.tool("same").definition


def test_upstreams_missing_from_order_come_after_configured_ones():
    catalog = Catalog(["known"])
    catalog.update("zzz", "", tools=[tool("t")])
    catalog.update("aaa", "", tools=[tool("t")])
    catalog.update("known", "", tools=[tool("t")])
    assert catalog.collisions() == [Collision("tool", "t", ("known", "aaa", "zzz"), "known")]


# -- malformed input -------------------------------------------------------------------------


def test_malformed_items_are_skipped_and_reported_once(caplog):
    catalog = Catalog(["bad"])
    items = [
        "not a dict", {"description": "no name"}, {"name": 7, "inputSchema": SCHEMA},
        {"name": "", "inputSchema": SCHEMA}, {"name": "no_schema"},
        {"name": "list_schema", "inputSchema": []}, tool("ok"), tool("ok"),
        tool("not_json", default={1, 2}), tool("x" * 9000), tool("big", default=2**70),
    ]
    with caplog.at_level(logging.WARNING, logger="bastion.gateway.catalog"):
        assert catalog.update("bad", "b__", tools=items,
                              resources=[{"name": "no uri"}, {"uri": "u://x"}],
                              templates=[{"uriTemplate": "u://{a}{b}", "name": "adjacent"},
                                         {"uriTemplate": "u://{", "name": "open"}],
                              prompts="not a list") == {"tool"}
    assert names(catalog.tools()) == ["b__big", "b__ok"]  # past 64 bits is still JSON
    assert catalog.resources() == [] and catalog.templates() == [] and catalog.prompts() == []
    reasons = catalog.skipped("bad")
    assert len(reasons) == 14
    assert any("no object 'inputSchema'" in r for r in reasons)
    assert any("duplicate name 'b__ok'" in r for r in reasons)
    assert any("touches the variable before it" in r for r in reasons)
    assert any("prompts are not a list" in r for r in reasons)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "'bad'" in warnings[0].getMessage()
    catalog.update("bad", "b__", tools=[tool("ok")])
    assert catalog.skipped("bad") == () and catalog.skipped("other") == ()


def test_item_count_is_bounded(monkeypatch):
    monkeypatch.setattr("bastion.gateway.catalog.MAX_ITEMS_PER_KIND", 3)
    catalog = Catalog(["big"])
    catalog.update("big", "", tools=[tool(f"t{n}") for n in range(5)])
    assert names(catalog.tools()) == ["t0", "t1", "t2"]
    assert catalog.skipped("big") == ("only the first 3 tools kept",)


def test_bad_arguments_raise_typed_errors():
    with pytest.raises(TypeError, match="sequence of upstream names"):
        Catalog("abc")
    with pytest.raises(TypeError, match="sequence of upstream names"):
        Catalog(["a", ""])
    with pytest.raises(ValueError, match="twice"):
        Catalog(["a", "a"])
    with pytest.raises(TypeError, match="prefix"):
        Catalog(["a"], prefixes={"a": None})  # type: ignore[dict-item]
    catalog = Catalog(["a"])
    with pytest.raises(TypeError, match="upstream must be a non-empty string"):
        catalog.update("", "x", tools=[])
    with pytest.raises(TypeError, match="prefix of upstream 'a' must be a string"):
        catalog.update("a", None, tools=[])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="upstream must be"):
        catalog.remove(None)  # type: ignore[arg-type]


def test_lookups_with_bad_input_find_nothing():
    catalog = Catalog(["a"])
    catalog.update("a", "a__", tools=[tool("x")],
                   templates=[{"uriTemplate": "u://{+rest}", "name": "t"}])
    for bad in (None, ["a__x"], {"n": 1}, 3):
        assert catalog.tool(bad) is None  # type: ignore[arg-type]
        assert catalog.prompt(bad) is None  # type: ignore[arg-type]
        assert catalog.resource(bad) is None  # type: ignore[arg-type]
        assert catalog.template(bad) is None  # type: ignore[arg-type]
        assert catalog.owner_of_prefix(bad) is None  # type: ignore[arg-type]
    assert catalog.resource("u://" + "x" * 9000) is None  # too long to match templates
    assert catalog.resource("u://" + "x" * 100).upstream == "a"


# -- resource routing ------------------------------------------------------------------------


def test_resource_routing_by_exact_uri_then_templates():
    catalog = Catalog(["repo", "mem", "files"])
    catalog.update("repo", "repo__", templates=[
        {"uriTemplate": "repo://{owner}/{name}/issues/{number}", "name": "issue"},
        {"uriTemplate": "repo://{owner}/{name}", "name": "repo"},
    ])
    catalog.update("mem", "mem__", resources=[{"uri": "repo://special/one", "name": "special"}],
                   templates=[{"uriTemplate": "mem://users/{user}", "name": "user"}])
    catalog.update("files", "files__", templates=[
        {"uriTemplate": "file:///{+path}{?rev}", "name": "file"}])

    assert catalog.resource("repo://special/one").upstream == "mem"  # exact URI first
    issue = catalog.resource("repo://acme/app/issues/42")
    assert (issue.kind, issue.upstream, issue.key) == (
        "template", "repo", "repo://{owner}/{name}/issues/{number}")
    assert catalog.resource("repo://acme/app").key == "repo://{owner}/{name}"
    assert catalog.resource("mem://users/ann").upstream == "mem"  # variable at the very end
    assert catalog.resource("file:///etc/hosts?rev=3").upstream == "files"
    assert catalog.resource("file:///etc/hosts").upstream == "files"
    assert catalog.resource("repo://acme/app/issues") is None
    assert catalog.resource("mem://users/") is None
    assert catalog.resource("mem://users/ann/extra") is None
    assert catalog.resource("unknown://x") is None


def test_overlapping_templates_resolve_in_list_order():
    catalog = Catalog(["b", "a"])
    catalog.update("a", "", templates=[{"uriTemplate": "x://{a}/one", "name": "a"}])
    catalog.update("b", "", templates=[{"uriTemplate": "x://{b}/{c}", "name": "b"}])
    assert [t["uriTemplate"] for t in catalog.templates()] == ["x://{a}/one", "x://{b}/{c}"]
    assert catalog.resource("x://k/one").upstream == "a"
    assert catalog.resource("x://k/two").upstream == "b"


def test_removing_an_upstream_stops_routing_to_its_templates():
    catalog = Catalog(["a"])
    catalog.update("a", "", templates=[{"uriTemplate": "x://{id}", "name": "t"}])
    assert catalog.resource("x://1") is not None
    assert catalog.remove("a") == {"template"}
    assert catalog.resource("x://1") is None and catalog.templates() == []


# -- pagination ------------------------------------------------------------------------------


def test_pages_walk_the_whole_list_in_order():
    catalog = Catalog(["a"])
    catalog.update("a", "", tools=[tool(f"t{n:02}") for n in range(7)],
                   templates=[{"uriTemplate": "x://{id}", "name": "t"}])
    seen, cursor, pages = [], None, 0
    while True:
        page = catalog.page("tool", cursor, 3)
        seen += names(page["tools"])
        pages += 1
        cursor = page.get("nextCursor")
        if cursor is None:
            break
    assert seen == names(catalog.tools()) and pages == 3
    assert catalog.page("template", None, 10) == {"resourceTemplates": catalog.templates()}
    assert catalog.page("prompt", None, 10) == {"prompts": []}
    assert catalog.page("resource", None, 10) == {"resources": []}


@pytest.mark.parametrize("cursor", ["%%%", "bm90LWFuLW9mZnNldA", 42, "bzo5OQ"])
def test_bad_cursors_are_invalid_params(cursor):
    catalog = Catalog(["a"])
    catalog.update("a", "", tools=[tool("x")])
    with pytest.raises(InvalidParams, match="cursor"):
        catalog.page("tool", cursor, 10)


def test_page_rejects_bad_kind_and_size():
    catalog = Catalog(["a"])
    with pytest.raises(ValueError, match="unknown kind 'tools'"):
        catalog.page("tools", None, 10)  # type: ignore[arg-type]
    for size in (0, -1, True, 2.5):
        with pytest.raises(ValueError, match="page_size"):
            catalog.page("tool", None, size)  # type: ignore[arg-type]


# -- owner_of_prefix -------------------------------------------------------------------------


def test_owner_of_prefix_prefers_the_longest_and_ignores_empty_prefixes():
    catalog = Catalog(["git", "github", "raw"], prefixes={"github": "git__hub__"})
    catalog.update("git", "git__", tools=[tool("log")])
    catalog.update("raw", "", tools=[tool("git__whatever")])
    assert catalog.owner_of_prefix("git__hub__issues") == "github"  # never updated, still known
    assert catalog.owner_of_prefix("git__status") == "git"
    assert catalog.owner_of_prefix("plain") is None
    catalog.remove("git")
    assert catalog.owner_of_prefix("git__status") == "git"  # a down upstream is still named


# -- properties ------------------------------------------------------------------------------

_names = st.sampled_from(["a", "b", "search", "read", "a__b", "x"])
_upstream_sets = st.dictionaries(
    st.sampled_from(["a", "b", "c", "d"]),
    st.tuples(st.sampled_from(["", "a__", "b__", "p."]),
              st.lists(st.tuples(_names, st.integers(0, 2)), max_size=6)),
    max_size=4,
)


@settings(max_examples=150, deadline=None)
@given(upstreams=_upstream_sets, removed=st.sets(st.sampled_from(["a", "b", "c", "d"])))
def test_every_visible_tool_resolves_to_its_listed_definition(upstreams, removed):
    catalog = Catalog(["d", "c", "b", "a"])
    for upstream, (prefix, items) in upstreams.items():
        catalog.update(upstream, prefix,
                       tools=[tool(name, description=str(variant)) for name, variant in items])
    for upstream in removed:
        catalog.remove(upstream)

    listed = catalog.tools()
    keys = names(listed)
    assert len(keys) == len(set(keys)) and keys == sorted(keys)
    for definition in listed:
        entry = catalog.tool(definition["name"])
        assert entry is not None and entry.definition is definition
        assert entry.key == definition["name"]
        assert entry.key == upstreams[entry.upstream][0] + entry.original
    live = {u: v for u, v in upstreams.items() if u not in removed}
    expected = {prefix + name for prefix, items in live.values() for name, _ in items}
    assert set(keys) == expected
    for collision in catalog.collisions():
        assert collision.winner == collision.upstreams[0] == catalog.tool(collision.key).upstream
