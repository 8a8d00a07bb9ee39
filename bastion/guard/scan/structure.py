"""Structure and schema rules: what the shape of a definition says, without reading prose.

Tool names outside the spec's character set, mixed-script (confusable) names, collisions
and near-duplicates across upstreams; schema fields that carry instructions or sensitive
values (property names, defaults, enums, examples, unknown keys); network `$ref`s; invalid
`x-mcp-header`s; parameters that ask for secrets or the conversation, or that serve as an
unexplained side channel; annotations that contradict the tool; icons with active or local
URLs; HTML comments and markdown images where nobody reads them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from bastion.guard.scan.confusables import mixed_scripts, skeleton
from bastion.guard.scan.findings import Severity
from bastion.guard.scan.inventory import Item
from bastion.guard.scan.names import NameIndex, content_tokens, skeleton_of
from bastion.guard.scan.normalize import words_of_identifier
from bastion.guard.scan.signals import GROUPS
from bastion.guard.scan.unicode import visible

C, H, M, L = Severity.CRITICAL, Severity.HIGH, Severity.MEDIUM, Severity.LOW


@dataclass(frozen=True, slots=True)
class Hit:
    """A structural finding before it is given its surface."""

    code: str
    severity: Severity
    path: str
    message: str
    evidence: str | None = None


TOOL_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,128}")
_TCHAR = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_SENSITIVE_VALUE = GROUPS["c_strong"]
_SHELL_META = re.compile(r"[;&|`]|\$\(|>\s*/|\.\./\.\.")
_SINK_URL_PATH = re.compile(r"(?:upload|collect|exfil|steal|capture|beacon|track|hook|log"
                            r"|drop|leak|sink|ingest|report)", re.I)
_DEST_PARAM = re.compile(r"(?:dest|destination|target|upload|webhook|callback|endpoint|sink"
                         r"|report|forward|send|post|notify|exfil|recipient|server|host)",
                         re.I)
_SIDE_CHANNEL = frozenset({"sidenote", "side_note", "note", "notes", "context", "ctx", "metadata",
                           "meta", "debug", "debug_info", "extra", "extra_info", "payload",
                           "info", "comment", "remarks", "feedback", "aux", "hidden", "memo",
                           "annotation", "additional_context", "details"})
_CONVERSATION_PARAM = re.compile(r"\b(?:conversation|chat|dialog\w*|message) (?:history|log"
                                 r"|so far|transcript)\b|\bsystem (?:prompt|message)\b"
                                 r"|\bprevious messages\b|\bfull conversation\b"
                                 r"|\b(?:tool|other) (?:outputs?|results?)\b")
_CREDENTIAL_PARAM = re.compile(r"\b(?:password|passwd|passphrase|api key|apikey|secret|token"
                               r"|private key|ssh key|credentials?|cookie|session id)\b")
_AUTH_PURPOSE = re.compile(r"auth|login|log in|sign|credential|secret|token|key|password"
                           r"|account|vault|connect|session|oauth|certificate|encrypt", re.I)
_CHAT_PURPOSE = re.compile(r"conversation|chat|message|history|memory|transcript|prompt"
                           r"|summar|dialog", re.I)
_WRITE_VERB = re.compile(r"^(?:delete|remove|drop|destroy|wipe|purge|write|create|update"
                         r"|send|post|upload|push|execute|exec|run|kill|move|rename|merge"
                         r"|publish|transfer|pay)(?:[_\-.]|[A-Z]|$)", re.I)
_COMMENT = re.compile(r"<!--(.*?)(?:-->|$)", re.S)
_MD_IMAGE = re.compile(r"!\[[^\]\n]{0,200}\]\(\s*<?([^)\s>]{1,2048})")
_HTML_IMG = re.compile(r"<[iI][mM][gG]\b[^>]{0,400}?\bsrc\s*=\s*['\"]?([^'\"\s>]{1,2048})")
_MD_LINK = re.compile(r"\]\(\s*<?([^)\s>]{1,2048})")
_PLACEHOLDER = re.compile(r"\{\{|\{[a-z_]{3,}\}|\$\{|\$\(|%7b%7b|<[a-z_]{3,}>|\[[A-Z_]{4,}\]",
                          re.I)


# -- names ---------------------------------------------------------------------------------

def name_rules(name: object, path: str, *, server: str | None,
               known_tools: Mapping[str, str] | NameIndex, kind: str = "tool") -> list[Hit]:
    """A tool (or prompt) name: charset, mixed scripts, collisions with other upstreams
    (`known_tools` indexed once, as a `NameIndex`, when many names are checked)."""
    if not isinstance(name, str) or not name:
        return [Hit("E-TP02.name", H, path, f"the {kind} has no name (or a non-string one); "
                    "drop it", None)]
    hits: list[Hit] = []
    if kind == "tool" and not TOOL_NAME.fullmatch(name):
        hits.append(Hit("E-TP02.name", M, path, f"the {kind} name is outside "
                        "[A-Za-z0-9_.-]{1,128} (SPEC-TOOL-02)", visible(name)))
    scripts = mixed_scripts(name)
    if scripts:
        hits.append(Hit("E-TP02.confusable", H, path, f"the {kind} name mixes scripts "
                        f"({', '.join(sorted(scripts))}): a look-alike of "
                        f"`{skeleton(name)}`", visible(name)))
    if known_tools and server is not None:
        index = known_tools if isinstance(known_tools, NameIndex) else NameIndex(known_tools)
        hits.extend(_collisions(name, path, server, index))
    return hits


def _collisions(name: str, path: str, server: str, index: NameIndex) -> list[Hit]:
    hits: list[Hit] = []
    skel = skeleton_of(name)
    tokens = content_tokens(name)
    for _, other, upstream in index.candidates(name):
        if other == name and upstream == server:
            continue
        if other == name:
            hits.append(Hit("E-TP02.collision", H, path, f"`{name}` is also a tool of "
                            f"upstream `{upstream}`: two servers claim the same name",
                            name))
        elif skeleton_of(other) == skel:
            if name.isascii() and other.isascii():
                hits.append(Hit("E-TP02.collision", H, path, f"`{name}` differs from "
                                f"`{other}` ({upstream}) only in case or separators",
                                name))
            else:
                hits.append(Hit("E-TP02.confusable", C, path, f"`{visible(name)}` looks "
                                f"like `{other}` of upstream `{upstream}` but is spelt "
                                "with other characters", visible(name)))
        elif upstream != server and tokens and tokens == content_tokens(other):
            hits.append(Hit("E-TP02.overlap", M, path, f"`{name}` duplicates the function of "
                            f"`{other}` ({upstream}) under another name", name))
    return hits


# -- schema fields ---------------------------------------------------------------------------

def schema_item_rules(item: Item) -> list[Hit]:
    """Rules for one inventory item that sits in a schema (keys, values, refs, headers)."""
    role = item.role
    if role == "property-name":
        return _property_name(item)
    if role in ("default", "const", "examples"):
        return _value(item)
    if role == "enum":
        return _enum(item)
    if role == "extra":
        words = len(item.text.split())
        if words >= 5 or len(item.text) >= 60:
            return [Hit("E-FSP.extra", L, item.path, "a schema key no vocabulary defines "
                        "holds prose that reaches the model", visible(item.text, 120))]
        return []
    if role == "ref":
        return _ref(item)
    return []


def _property_name(item: Item) -> list[Hit]:
    name = item.text
    words = words_of_identifier(name)
    hits: list[Hit] = []
    if _SENSITIVE_VALUE.search(words) or _CONVERSATION_PARAM.search(words):
        hits.append(Hit("E-FSP.name", H, item.path, "the parameter name asks for secrets or "
                        "the conversation: the name itself is the instruction", name))
    elif len(name) > 40 and len(words.split()) >= 5:
        hits.append(Hit("E-FSP.name", M, item.path, f"a {len(name)}-character parameter name "
                        "reads as a sentence", name))
    if mixed_scripts(name):
        hits.append(Hit("E-FSP.name", H, item.path, "the parameter name mixes scripts "
                        "(look-alike letters)", visible(name)))
    return hits


def _value(item: Item) -> list[Hit]:
    value = item.text
    param = _param_of(item.path)
    low = value.lower()
    if _SENSITIVE_VALUE.search(low):
        return [Hit("E-FSP.default", H, item.path, f"the {item.role} value points at keys, "
                    "credentials or the conversation", visible(value, 120))]
    if low.startswith(("http://", "https://", "ftp://", "file:", "//")):
        parts = urlsplit(value)
        host = parts.hostname or ""
        if value.startswith("file:") or _is_internal(host):
            return [Hit("E-FSP.default", H, item.path, f"the {item.role} URL points at a "
                        "local or internal address", visible(value, 120))]
        if _SINK_URL_PATH.search(parts.path + "?" + parts.query) and _DEST_PARAM.search(param):
            return [Hit("E-FSP.default", H, item.path, f"the {item.role} of `{param}` sends "
                        "data to an outside collector unless the model overrides it",
                        visible(value, 120))]
        if _DEST_PARAM.search(param):
            return [Hit("E-FSP.default", M, item.path, f"the {item.role} of `{param}` is an "
                        "outside destination", visible(value, 120))]
        return []
    if _SHELL_META.search(value) and GROUPS["command"].search(low):
        return [Hit("E-FSP.default", H, item.path, f"the {item.role} value is a shell "
                    "command", visible(value, 120))]
    return []


def _enum(item: Item) -> list[Hit]:
    value = item.text
    if len(value) > 40 or len(words_of_identifier(value).split()) >= 5:
        return [Hit("E-FSP.enum", M, item.path, "an enum value reads as a sentence",
                    visible(value, 120))]
    return []


def _ref(item: Item) -> list[Hit]:
    ref = item.text.strip()
    if ref.startswith("#"):
        return []
    scheme = urlsplit(ref).scheme.lower()
    network = scheme in ("http", "https", "ftp", "ws", "wss", "file") or ref.startswith("//")
    return [Hit("E-FSP.ref", H, item.path, ("a network" if network else "an external")
                + " `$ref`: Bastion never dereferences it; the schema is unresolvable "
                "(SPEC-SSRF-06)", visible(ref, 160))]


def _is_internal(host: str) -> bool:
    import ipaddress

    h = host.strip("[]").lower()
    if h in ("localhost", "metadata.google.internal") or h.endswith((".local", ".internal",
                                                                       ".localhost")):
        return True
    try:
        ip = ipaddress.ip_address(h)
    except ValueError:
        return h.isdigit() or h.startswith("0x")  # decimal or hex IPv4 forms
    return not ip.is_global


def _param_of(path: str) -> str:
    parts = path.split("/")
    for i in range(len(parts) - 1, 0, -1):
        if parts[i - 1] == "properties":
            return parts[i]
    return ""


# -- whole-tool rules ----------------------------------------------------------------------

def header_rules(schema: object, base: str) -> list[Hit]:
    """`x-mcp-header` (2026-07-28): tchar only, no controls, unique ignoring case, on
    primitive non-number properties directly under inputSchema. Otherwise the tool MUST be
    dropped (SPEC-TOOL-04)."""
    if not isinstance(schema, dict):
        return []
    hits: list[Hit] = []
    seen: dict[str, str] = {}
    direct = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
    for path, prop, value in _headers(schema, base):
        problem = None
        if not isinstance(value, str) or not value:
            problem = "is empty or not a string"
        elif not _TCHAR.fullmatch(value):
            problem = "holds characters a header name may not (CR/LF, spaces, controls)"
        elif value.lower() in seen:
            problem = f"repeats `{seen[value.lower()]}` (header names ignore case)"
        elif not (isinstance(prop, dict) and prop.get("type") in ("string", "integer",
                                                                     "boolean")):
            problem = "sits on a property that is not a string, integer or boolean"
        elif not any(v is prop for v in direct.values()):
            problem = "is not statically reachable (not a direct property of inputSchema)"
        if problem:
            hits.append(Hit("E-FSP.header", H, path, f"`x-mcp-header` {problem}; the tool "
                            "must be dropped (SPEC-TOOL-04)", visible(str(value), 120)))
        elif isinstance(value, str):
            seen[value.lower()] = value
    return hits


def _headers(node: object, path: str, depth: int = 0) -> Iterable[tuple[str, object, object]]:
    if depth > 32:
        return
    if isinstance(node, dict):
        if "x-mcp-header" in node:
            yield f"{path}/x-mcp-header", node, node["x-mcp-header"]
        for key, value in node.items():
            if isinstance(value, dict | list):
                yield from _headers(value, f"{path}/{key}", depth + 1)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _headers(value, f"{path}/{i}", depth + 1)


def parameter_rules(tool: Mapping[str, object]) -> list[Hit]:
    """Parameters that ask for more than the tool's stated purpose needs."""
    schema = tool.get("inputSchema")
    props = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(props, dict):
        return []
    purpose = f"{tool.get('name', '')} {tool.get('title', '')} {tool.get('description', '')}"
    described = str(tool.get("description") or "").lower()
    hits: list[Hit] = []
    for name, prop in props.items():
        if not isinstance(name, str):
            continue
        path = f"/inputSchema/properties/{name}"
        desc = str(prop.get("description", "")) if isinstance(prop, dict) else ""
        words = f"{words_of_identifier(name)} {desc.lower()}"
        if _CONVERSATION_PARAM.search(words) and not _CHAT_PURPOSE.search(purpose):
            hits.append(Hit("E-SC01.conversation", H, path, f"`{name}` asks for the "
                            "conversation, the system prompt or other tools' output, which "
                            "this tool's purpose does not need", visible(desc or name, 120)))
        elif _CREDENTIAL_PARAM.search(words) and not _AUTH_PURPOSE.search(purpose):
            hits.append(Hit("E-SC01.credential", M, path, f"`{name}` asks for a credential "
                            "that this tool's purpose does not explain",
                            visible(desc or name, 120)))
        if (name.lower() in _SIDE_CHANNEL and not desc and isinstance(prop, dict)
                and prop.get("type", "string") == "string"
                and name.lower() not in described):
            hits.append(Hit("E-SC01.side-channel", L, path, f"`{name}` is a free-text "
                            "parameter the description never explains (a side channel)",
                            name))
    return hits


def annotation_rules(tool: Mapping[str, object]) -> list[Hit]:
    """`readOnlyHint: true` on a tool whose name says it writes, deletes or sends."""
    annotations = tool.get("annotations")
    name = tool.get("name")
    if not isinstance(annotations, dict) or not isinstance(name, str):
        return []
    if annotations.get("readOnlyHint") is True and _WRITE_VERB.match(name):
        return [Hit("E-SC01.annotation", M, "/annotations/readOnlyHint",
                    f"`{name}` claims readOnlyHint but its name says it changes things; "
                    "annotations from untrusted servers are hints only (SPEC-TOOL-01)", name)]
    return []


def icon_rules(tool: Mapping[str, object]) -> list[Hit]:
    """Icons: only https: or data: raster images (SPEC-SSRF-07)."""
    icons = tool.get("icons")
    if not isinstance(icons, list):
        return []
    hits: list[Hit] = []
    for i, icon in enumerate(icons):
        src = icon.get("src") if isinstance(icon, dict) else None
        if not isinstance(src, str):
            continue
        low = src.strip().lower()
        path = f"/icons/{i}/src"
        if low.startswith(("javascript:", "vbscript:", "file:")) or (
                low.startswith("data:") and ("svg" in low[:40] or "html" in low[:40])):
            hits.append(Hit("E-TP01.icon", H, path, "the icon is active content or a local "
                            "file", visible(src, 80)))
        elif low.startswith("http:") or (low.startswith("https:")
                                        and _is_internal(urlsplit(src).hostname or "")):
            hits.append(Hit("E-TP01.icon", M, path, "the icon is fetched over plain HTTP or "
                            "from an internal address", visible(src, 80)))
    return hits


def website_rules(info: Mapping[str, object]) -> list[Hit]:
    """`serverInfo.websiteUrl`: an https (or http) page; active, local or internal
    addresses are not a website a client should show or open."""
    url = info.get("websiteUrl")
    if url is None:
        return []
    path = "/websiteUrl"
    if not isinstance(url, str):
        return [Hit("E-TP01.link", M, path, "the website URL is not a string", None)]
    low = url.strip().lower()
    if not low.startswith(("https://", "http://")):
        severity = H if low.startswith(("javascript:", "vbscript:", "data:", "file:")) else M
        return [Hit("E-TP01.link", severity, path, "the website URL is not an http(s) "
                    "address", visible(url, 120))]
    if _is_internal(urlsplit(url.strip()).hostname or ""):
        return [Hit("E-TP01.link", M, path, "the website URL points at a local or internal "
                    "address", visible(url, 120))]
    return []


# -- markup in any string --------------------------------------------------------------------

def markup_rules(item: Item, *, context: bool) -> list[Hit]:
    """HTML comments (metadata), markdown or HTML images and links that carry data out."""
    text = item.text
    hits: list[Hit] = []
    if not context and "<!--" in text:
        m = _COMMENT.search(text)
        if m and m.group(1).strip():
            hits.append(Hit("E-TP01.comment", M, item.path, "an HTML comment hides text from "
                            "whoever reads the rendered description", visible(m.group(1), 160)))
    if "](" in text or (("<img" in text or "<IMG" in text) and _HTML_IMG.search(text)):
        for url in _image_urls(text):
            sev = _exfil_url(url)
            if sev is not None:
                code = "E-RS.markdown-image" if context else "E-TP01.markdown-image"
                hits.append(Hit(code, sev, item.path, "a markdown or HTML image whose URL "
                                "carries data out when the client renders it (zero-click)",
                                visible(url, 160)))
                break
        for m in _MD_LINK.finditer(text):
            if (m.group(1).startswith(("http", "//")) and _PLACEHOLDER.search(m.group(1))
                    and urlsplit(m.group(1)).query):
                code = "E-RS.link" if context else "E-TP01.link"
                hits.append(Hit(code, H, item.path, "a link whose URL asks the model to fill "
                                "in data (template placeholders)", visible(m.group(1), 160)))
                break
    return hits


def _image_urls(text: str) -> Iterable[str]:
    for m in _MD_IMAGE.finditer(text):
        yield m.group(1)
    for m in _HTML_IMG.finditer(text):
        yield m.group(1)


def _exfil_url(url: str) -> Severity | None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https", ""):
        return None
    if _PLACEHOLDER.search(url):
        return H
    query = parts.query
    if not query:
        return None
    longest = max((len(v) for v in re.split(r"[&=]", query)), default=0)
    return M if longest >= 100 else None
