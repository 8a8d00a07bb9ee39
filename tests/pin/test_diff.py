"""`bastion pin diff`'s engine: JSON-pointer changes, hidden characters made visible."""

from __future__ import annotations

from bastion.guard.pin.diff import MAX_CHANGES, Change, diff_definitions, pointer, visible

OLD = {
    "name": "isolate_host",
    "description": "Cut a host off the network.",
    "inputSchema": {"type": "object",
                    "properties": {"host": {"type": "string"}, "a/b~c": {"type": "string"}},
                    "required": ["host"]},
    "annotations": {"destructiveHint": True},
    "_meta": {"traceparent": "00-1"},
}


def changes(old: dict, new: dict) -> set[tuple[str, str, object, object]]:
    return {(c.path, c.op, repr(c.old), repr(c.new)) for c in diff_definitions(old, new)}


def test_PIN_5_3_identical_definitions_have_no_diff_whatever_the_volatile_noise():
    noisy = {**OLD, "_meta": {"traceparent": "00-2", "progressToken": 5},
             "inputSchema": {**OLD["inputSchema"], "required": ["host"]}}
    assert diff_definitions(OLD, noisy) == []
    assert diff_definitions({**OLD, "n": 1}, {**OLD, "n": 1.0}) == []


def test_PIN_5_3_added_removed_and_changed_members_have_json_pointers():
    new = {**OLD, "description": "Cut a host off.", "title": "Isolate",
           "inputSchema": {"type": "object", "properties": {"host": {"type": "integer"}},
                           "required": ["host", "reason"]},
           "annotations": {}}
    assert changes(OLD, new) == {
        ("/description", "changed", repr(OLD["description"]), repr("Cut a host off.")),
        ("/title", "added", "None", repr("Isolate")),
        ("/inputSchema/properties/host/type", "changed", repr("string"), repr("integer")),
        ("/inputSchema/properties/a~1b~0c", "removed", repr({"type": "string"}), "None"),
        ("/inputSchema/required", "added", "None", repr("reason")),
        ("/annotations/destructiveHint", "removed", "True", "None"),
    }
    assert pointer(("a/b", "~", 0)) == "/a~1b/~0/0"


def test_PIN_5_3_positional_lists_compare_by_index():
    old = {"name": "p", "arguments": [{"name": "a"}, {"name": "b"}]}
    new = {"name": "p", "arguments": [{"name": "b"}]}
    assert changes(old, new) == {
        ("/arguments/0/name", "changed", repr("a"), repr("b")),
        ("/arguments/1", "removed", repr({"name": "b"}), "None"),
    }


def test_PIN_5_3_hidden_characters_are_shown_as_escapes():
    new = {**OLD, "description": "Cut a host\u200b off the network.\U000e0041"}
    (change,) = diff_definitions(OLD, new)
    line = change.describe()
    assert "\\u200b" in line and "\\U000e0041" in line
    assert "\u200b" not in line and "\U000e0041" not in line
    assert visible({"k": "a\u00a0b\u202ec"}) == '{"k": "a\\u00a0b\\u202ec"}'
    assert visible("plain é text") == '"plain é text"'


def test_PIN_5_3_long_strings_show_the_region_that_differs():
    text = "x" * 300 + "MIDDLE" + "y" * 300
    change = Change("/description", "changed", old=text, new=text.replace("MIDDLE", "EVIL"))
    line = change.describe()
    assert "EVIL" in line and "MIDDLE" in line and "from character 300" in line
    assert len(line) < 300 and "…" in line


def test_PIN_5_3_a_diff_of_unrelated_definitions_is_bounded():
    old = {"name": "a", **{f"k{i}": i for i in range(MAX_CHANGES + 50)}}
    assert len(diff_definitions(old, {"name": "a"})) == MAX_CHANGES
    assert [c.op for c in diff_definitions({"x": [1]}, {"x": {"1": 1}})] == ["changed"]
