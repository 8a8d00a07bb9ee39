"""The redactor on whole results and arguments: what it walks, what it leaves, what it reports.

SPEC-TOOL-05: results are checked before the model sees them. SPEC-AUTH-12: a redaction report
(for the audit record) carries counts and paths, never a redacted value.
"""

from __future__ import annotations

import copy
import json
import time

import pytest

from bastion.config.redaction import PII_KINDS, RedactionConfig
from bastion.guard.redact import (
    MAX_REPORT_PATHS,
    NOTHING,
    RedactionLimitError,
    RedactionReport,
    Redactor,
    json_pointer,
)
from tests.redact import canaries as c

REDACTOR = Redactor()


def dirty_result() -> dict:
    return {
        "content": [
            {"type": "text", "text": f"found {c.GITHUB_CLASSIC} in the repo"},
            {"type": "image", "mimeType": "image/png", "data": c.AWS_KEY_ID},
            {"type": "audio", "mimeType": "audio/wav", "data": c.AWS_KEY_ID},
            {"type": "resource", "resource": {"uri": "file:///a", "blob": c.AWS_KEY_ID}},
            {"type": "resource", "resource": {"uri": "file:///b", "mimeType": "text/plain",
                                              "text": f"key={c.AWS_KEY_ID}"}},
            {"type": "resource_link", "uri": f"https://u:{c.PASSWORD}@h.example/x",
             "name": "link"},
        ],
        "structuredContent": {
            "hits": [{"host": "web-1", "owner": c.EMAIL,
                      "details": {"env": [f"STRIPE={c.STRIPE}", 42, None, True]}},
                     {"host": "web-2", "card": c.VISA}],
            "count": 2, "data": f"payload {c.JWT}",
        },
        "isError": False,
    }


def test_SPEC_TOOL_05_every_text_of_a_result_is_redacted() -> None:
    result = dirty_result()
    out, report = REDACTOR.redact_result(result)
    text = json.dumps(out)
    for secret in (c.GITHUB_CLASSIC, c.PASSWORD, c.STRIPE, c.VISA, c.JWT):
        assert secret not in text
    assert out["content"][0]["text"] == "found [REDACTED:github_token] in the repo"
    assert out["content"][4]["resource"]["text"] == "key=[REDACTED:aws_access_key_id]"
    assert out["content"][5]["uri"] == "https://u:[REDACTED:url_password]@h.example/x"
    assert out["structuredContent"]["hits"][0]["details"]["env"] == [
        "STRIPE=[REDACTED:stripe_key]", 42, None, True]
    assert out["structuredContent"]["hits"][1]["card"] == "[REDACTED:credit_card]"
    assert out["structuredContent"]["data"] == "payload [REDACTED:jwt]"
    # Email is not in the default PII set.
    assert out["structuredContent"]["hits"][0]["owner"] == c.EMAIL
    assert dict(report.counts) == {"github_token": 1, "aws_access_key_id": 1,
                                   "url_password": 1, "stripe_key": 1, "credit_card": 1,
                                   "jwt": 1}
    assert report.total == 6
    assert report.paths == (
        "/content/0/text", "/content/4/resource/text", "/content/5/uri",
        "/structuredContent/data", "/structuredContent/hits/0/details/env/0",
        "/structuredContent/hits/1/card")


def test_binary_payloads_are_not_text() -> None:
    result = dirty_result()
    out, _ = REDACTOR.redact_result(result)
    assert out["content"][1]["data"] == c.AWS_KEY_ID
    assert out["content"][2]["data"] == c.AWS_KEY_ID
    assert out["content"][3]["resource"]["blob"] == c.AWS_KEY_ID
    # Resource contents of resources/read results too.
    read = {"contents": [{"uri": "file:///x", "blob": c.AWS_KEY_ID},
                         {"uri": "file:///y", "text": c.AWS_KEY_ID}]}
    out, report = REDACTOR.redact_result(read)
    assert out["contents"][0]["blob"] == c.AWS_KEY_ID
    assert out["contents"][1]["text"] == "[REDACTED:aws_access_key_id]"
    assert report.paths == ("/contents/1/text",)
    # Outside content blocks, `data` and `blob` are ordinary fields.
    out, _ = REDACTOR.redact_arguments({"data": c.AWS_KEY_ID, "blob": c.AWS_KEY_ID})
    assert out == {"data": "[REDACTED:aws_access_key_id]", "blob": "[REDACTED:aws_access_key_id]"}


def test_a_clean_result_is_returned_as_the_same_object() -> None:
    result = {"content": [{"type": "text", "text": "all quiet on host web-1"}],
              "structuredContent": {"rows": [{"id": "123e4567-e89b-12d3-a456-426614174000",
                                              "sha": "da39a3ee5e6b4b0d3255bfef95601890afd80709"}]}}
    out, report = REDACTOR.redact_result(result)
    assert out is result
    assert report is NOTHING and not report and report.total == 0
    text = "nothing to see"
    assert REDACTOR.redact_text(text)[0] is text
    arguments = {"query": "select 1", "limit": 10}
    assert REDACTOR.redact_arguments(arguments)[0] is arguments


def test_a_dirty_result_is_a_copy_sharing_untouched_branches() -> None:
    result = dirty_result()
    pristine = copy.deepcopy(result)
    out, _ = REDACTOR.redact_result(result)
    assert result == pristine                      # the input is never mutated
    assert out is not result
    assert out["content"] is not result["content"]
    assert out["content"][0] is not result["content"][0]
    assert out["content"][1] is result["content"][1]    # untouched blocks are shared
    assert out["structuredContent"]["hits"][0]["details"] is not \
        result["structuredContent"]["hits"][0]["details"]


def test_SPEC_AUTH_12_the_report_never_holds_a_redacted_value() -> None:
    _, report = REDACTOR.redact_result(dirty_result())
    dumped = json.dumps(report.for_audit()) + repr(report)
    for secret in (c.GITHUB_CLASSIC, c.AWS_KEY_ID, c.PASSWORD, c.STRIPE, c.VISA, c.JWT):
        assert secret not in dumped
        assert secret[4:12] not in dumped
    assert report.for_audit() == {
        "redactions": 6,
        "kinds": {"aws_access_key_id": 1, "credit_card": 1, "github_token": 1, "jwt": 1,
                  "stripe_key": 1, "url_password": 1},
        "paths": list(report.paths)}


def test_report_paths_are_capped() -> None:
    arguments = {f"k{index}": c.AWS_KEY_ID for index in range(MAX_REPORT_PATHS + 5)}
    _, report = REDACTOR.redact_arguments(arguments)
    assert report.counts == {"aws_access_key_id": MAX_REPORT_PATHS + 5}
    assert len(report.paths) == MAX_REPORT_PATHS and report.truncated
    assert report.for_audit()["paths_truncated"] is True


def test_json_pointers_escape_slash_and_tilde() -> None:
    assert json_pointer(("a/b", "c~d", 0)) == "/a~1b/c~0d/0"
    assert json_pointer(()) == ""
    _, report = REDACTOR.redact_arguments({"x/y": {"~": [c.AWS_KEY_ID]}})
    assert report.paths == ("/x~1y/~0/0",)


def test_arguments_at_any_depth_and_secret_named_fields() -> None:
    arguments = {
        "query": f"find {c.AWS_KEY_ID}",
        "auth": {"password": "correct horse battery staple", "clientSecret": c.PASSWORD,
                 "api_key": "${API_KEY}", "token_type": "Bearer",
                 "nextPageToken": "CAESBggDEAEYAQ"},
        "headers": [{"Authorization": f"Bearer {c.OPAQUE}"}],
    }
    out, report = REDACTOR.redact_arguments(arguments)
    assert out == {
        "query": "find [REDACTED:aws_access_key_id]",
        "auth": {"password": "[REDACTED:password]", "clientSecret": "[REDACTED:secret]",
                 "api_key": "${API_KEY}", "token_type": "Bearer",
                 "nextPageToken": "CAESBggDEAEYAQ"},
        "headers": [{"Authorization": "[REDACTED:authorization]"}],
    }
    assert dict(report.counts) == {"aws_access_key_id": 1, "password": 1, "secret": 1,
                                   "authorization": 1}


def test_keys_and_numbers_are_not_rewritten() -> None:
    arguments = {c.AWS_KEY_ID: "x", "card": int(c.VISA), 7: "seven"}
    out, report = REDACTOR.redact_arguments(arguments)
    assert out is arguments and not report


def test_custom_patterns_and_replacement() -> None:
    redactor = Redactor(RedactionConfig(
        patterns=[{"name": "employee_id", "regex": "EMP-[0-9]{6}"}],
        replacement="<{kind} removed>"))
    out, report = redactor.redact_text(f"EMP-004217 and EMP-12 and {c.AWS_KEY_ID}")
    assert out == "<employee_id removed> and EMP-12 and <aws_access_key_id removed>"
    assert dict(report.counts) == {"employee_id": 1, "aws_access_key_id": 1}
    plain = Redactor(RedactionConfig(replacement="***"))
    assert plain.redact_text(c.AWS_KEY_ID)[0] == "***"


def test_a_custom_match_across_two_strings_redacts_both_pieces_and_counts_once() -> None:
    redactor = Redactor(RedactionConfig(secrets=False, pii=[],
                                        patterns=[{"name": "span", "regex": "x[^y]{0,3}y"}]))
    out, report = redactor.redact_arguments({"a": ["ax", "yb"]})
    assert out == {"a": ["a[REDACTED:span]", "[REDACTED:span]b"]}
    assert report.counts == {"span": 1}
    assert report.paths == ("/a/0", "/a/1")


def test_overlapping_findings_become_one_redaction() -> None:
    out, report = REDACTOR.redact_text(f'token = "{c.GITHUB_CLASSIC}"')
    assert out == 'token = "[REDACTED:github_token]"'
    assert report.counts == {"github_token": 1}


def test_many_small_strings_are_scanned_together() -> None:
    rows = [{"host": f"web-{index}", "note": "ok"} for index in range(5000)]
    rows[4321]["note"] = f"leaked {c.SLACK}"
    result = {"structuredContent": {"rows": rows}}
    out, report = REDACTOR.redact_result(result)
    assert out["structuredContent"]["rows"][4321]["note"] == "leaked [REDACTED:slack_token]"
    assert out["structuredContent"]["rows"][4320] is rows[4320]
    assert report.paths == ("/structuredContent/rows/4321/note",)


@pytest.mark.parametrize(("method", "value"), [
    ("redact_result", [{"type": "text"}]), ("redact_result", "text"), ("redact_result", None),
    ("redact_arguments", ["a"]), ("redact_arguments", "a=b"),
    ("redact_text", b"bytes"), ("redact_text", {"text": "x"}),
])
def test_bad_input_types_are_refused(method: str, value: object) -> None:
    with pytest.raises(TypeError, match=method):
        getattr(REDACTOR, method)(value)


def test_too_much_text_is_refused_not_passed_unscanned() -> None:
    small = Redactor(RedactionConfig(max_chars=1024))
    with pytest.raises(RedactionLimitError, match="1024") as caught:
        small.redact_result({"content": [{"type": "text", "text": "a" * 600},
                                         {"type": "text", "text": "b" * 600}]})
    assert caught.value.limit == 1024 and caught.value.size > 1024
    with pytest.raises(RedactionLimitError):
        small.redact_text("c" * 2000)
    assert small.redact_text("c" * 1000)[1] is NOTHING


def test_too_deep_nesting_is_refused() -> None:
    deep: dict = {"x": "leaf"}
    for _ in range(300):
        deep = {"x": deep}
    with pytest.raises(RedactionLimitError, match="nesting depth"):
        REDACTOR.redact_arguments(deep)


def test_inactive_redactor_returns_inputs_untouched() -> None:
    quiet = Redactor(RedactionConfig(secrets=False, pii=[]))
    result = dirty_result()
    out, report = quiet.redact_result(result)
    assert out is result and report is NOTHING


def test_report_defaults_and_truthiness() -> None:
    report = RedactionReport({"jwt": 2}, ("/a",))
    assert report and report.total == 2
    assert report.for_audit() == {"redactions": 2, "kinds": {"jwt": 2}, "paths": ["/a"]}


ADVERSARIAL = {
    "repeated keyword assignments": "token=" * 40_000,
    "low-entropy values": "password=aaaaaaaaaa " * 12_000,
    "BEGIN lines without END": "-----BEGIN RSA PRIVATE KEY-----\n" * 7_000,
    "a never-ending JWT head": "eyJ" + "a" * 240_000,
    "at signs": "a@b." * 60_000,
    "digit runs": ("4" * 19 + " ") * 12_000,
    "near-miss IBANs": "DE89 " * 20_000,
    "URL prefixes": "://a:" * 48_000,
}


@pytest.mark.parametrize("text", ADVERSARIAL.values(), ids=ADVERSARIAL.keys())
def test_adversarial_text_stays_linear(text: str) -> None:
    # About 240 KB each: backtracking or a quadratic rescan would take seconds, not this.
    everything = Redactor(RedactionConfig(pii=list(PII_KINDS)))
    started = time.perf_counter()
    everything.redact_text(text)
    assert time.perf_counter() - started < 1.5


def test_the_kind_placeholder_may_appear_more_than_once() -> None:
    redactor = Redactor(RedactionConfig(replacement="[{kind}:{kind}]"))
    assert redactor.redact_text(c.AWS_KEY_ID)[0] == "[aws_access_key_id:aws_access_key_id]"


def test_built_in_detectors_never_join_two_strings() -> None:
    arguments = {"a": ["Authorization: Bearer", c.OPAQUE, "password=", c.PASSWORD,
                       "-----BEGIN RSA PRIVATE KEY-----", c.PEM_BODY]}
    out, report = REDACTOR.redact_arguments(arguments)
    assert out["a"][:4] == arguments["a"][:4]
    # Only the key-material heuristic of a truncated block fires, inside its own string.
    assert out["a"][4] == "[REDACTED:private_key]" and out["a"][5] == c.PEM_BODY
    assert report.counts == {"private_key": 1}


def test_prompt_message_blocks_keep_their_binary_payloads() -> None:
    result = {"messages": [{"role": "user", "content": {"type": "image", "data": c.AWS_KEY_ID,
                                                       "mimeType": "image/png"}},
                           {"role": "user", "content": {"type": "text", "text": c.AWS_KEY_ID}}]}
    out, report = REDACTOR.redact_result(result)
    assert out["messages"][0] is result["messages"][0]
    assert out["messages"][1]["content"]["text"] == "[REDACTED:aws_access_key_id]"
    assert report.paths == ("/messages/1/content/text",)
