"""RFC 6570 URI templates matched back to variables: levels 1-3, bounds, linear matching."""

from __future__ import annotations

import time

import pytest

from bastion.server import Server
from bastion.server.resources import (
    MAX_TEMPLATE_LENGTH,
    InvalidTemplate,
    ResourceTemplate,
    compile_template,
)
from tests.framework.conftest import connect


def variables(template: str, uri: str) -> dict[str, str | None] | None:
    found = compile_template(template).fullmatch(uri)
    return None if found is None else found.groupdict()


@pytest.mark.parametrize(("template", "uri", "expected"), [
    # Level 1, as before: one segment a variable, greedy where literals repeat.
    ("mem://users/{user}/profile", "mem://users/ada/profile", {"user": "ada"}),
    ("mem://users/{user}", "mem://users/ada", {"user": "ada"}),
    ("x://{a}-{b}-{c}", "x://1-2-3-4", {"a": "1-2", "b": "3", "c": "4"}),
    ("x://{name}.{ext}", "x://archive.tar.gz", {"name": "archive.tar", "ext": "gz"}),
    ("x{y}", "xxx", {"y": "xx"}),
    # Levels 2 and 3.
    ("file:///{+path}", "file:///etc/ssh/config", {"path": "etc/ssh/config"}),
    ("file:///{+path}/{name}", "file:///a/b/c", {"path": "a/b", "name": "c"}),
    ("x://{a}{/b*}", "x://a/b/c", {"a": "a", "b": "b/c"}),
    ("x://{a}{/b}{.ext}", "x://a/b.txt", {"a": "a", "b": "b", "ext": "txt"}),
    ("x://{x,y}", "x://1,2", {"x": "1", "y": "2"}),
    ("x://page{#section}", "x://page#intro/x", {"section": "intro/x"}),
    ("x://p{;w,h}", "x://p;w=3;h=4", {"w": "3", "h": "4"}),
    ("s://find{?q,lang}", "s://find?q=owls&lang=en", {"q": "owls", "lang": "en"}),
    ("s://find{?q,lang}", "s://find?lang=en", {"q": None, "lang": "en"}),
    ("s://find{?q,lang}", "s://find", {"q": None, "lang": None}),
    ("s://find{?q}{&page}", "s://find?q=x&page=2", {"q": "x", "page": "2"}),
    ("s://find{?q}", "s://find?q=", {"q": ""}),
    ("x://{a:3}", "x://abc", {"a": "abc"}),
    ("x://{a}/{a}", "x://1/1", {"a": "1"}),
])
def test_expansions_match_back(template, uri, expected):
    assert variables(template, uri) == expected


@pytest.mark.parametrize(("template", "uri"), [
    ("mem://users/{user}/profile", "mem://users/a/b/profile"),
    ("mem://users/{user}", "mem://users/"),
    ("x://{a:3}", "x://abcd"),
    ("x://{a}/{a}", "x://1/2"),
    ("s://find{?q}", "s://find?other=1"),
    ("file:///{+path}", "file:///a?b"),
])
def test_non_expansions_do_not_match(template, uri):
    assert variables(template, uri) is None


@pytest.mark.parametrize(("template", "reason"), [
    ("x://{a}{b}", "touches the variable before it"),
    ("x://{a}{+b}", "touches the variable before it"),
    ("x://{1a}", "not a variable name"),
    ("x://{a.b}", "not a variable name"),
    ("x://{}", "not a variable name"),
    ("x://{a", "unbalanced brace"),
    ("x://a}", "unbalanced brace"),
    ("x://{?a*}", "explode"),
    ("x://" + "a" * MAX_TEMPLATE_LENGTH, "at most"),
    ("x://" + "/".join(f"{{v{n}}}" for n in range(65)), "more than 64 variables"),
])
def test_invalid_templates_are_refused_with_the_reason(template, reason):
    with pytest.raises(InvalidTemplate, match=reason) as caught:
        compile_template(template)
    assert reason in caught.value.reason


def test_non_string_template_is_refused():
    with pytest.raises(InvalidTemplate):
        compile_template(None)  # type: ignore[arg-type]


@pytest.mark.parametrize("template", ["x://{+a}/{b}/{+c}", "x://{+b}{/c}{/e*}-.-{?f,g}",
                                      "x://{a}-{b}-{c}-{d}-{e}"])
def test_matching_is_linear_on_hostile_uris(template):
    pattern = compile_template(template)
    for unit in ("/", "-", "-.-q,/q", "a-"):
        uri = "x://" + unit * (60_000 // len(unit)) + "!"
        started = time.perf_counter()
        pattern.fullmatch(uri)
        assert time.perf_counter() - started < 0.5, (template, unit)


def test_a_bad_template_fails_where_it_is_registered():
    server = Server("t")
    with pytest.raises(InvalidTemplate, match="touches"):
        @server.resource_template("x://{a}{b}")
        async def nothing(a: str, b: str) -> str:
            return a + b


def test_absent_query_variables_are_not_arguments():
    async def read(**kwargs: str) -> str:
        return str(kwargs)

    template = ResourceTemplate("s://find{?q,lang}", "find", read)
    assert template.match("s://find?lang=en") == {"lang": "en"}
    assert template.match("s://other") is None


async def test_reserved_and_query_templates_over_a_real_connection():
    server = Server("files")

    @server.resource_template("file:///{+path}{?rev}")
    async def file(path: str, rev: str = "head") -> str:
        return f"{path}@{rev}"

    async with connect(server) as client:
        plain = await client.read_resource("file:///etc/hosts")
        assert plain["contents"][0]["text"] == "etc/hosts@head"
        pinned = await client.read_resource("file:///src/a.py?rev=7")
        assert pinned["contents"][0]["text"] == "src/a.py@7"
