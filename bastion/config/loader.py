"""Loading the configuration file: bounded read, YAML, `${ENV}` interpolation, validation.

Interpolation runs on the parsed document, over string values only (never keys), so an
environment variable can never inject YAML structure:

- `${VAR}` is the variable's value; unset is an error naming the variable and the field;
- `${VAR:-default}` is the default when VAR is unset or empty (as in the shell);
- `$${` is a literal `${`.

Every problem becomes a `ConfigError` that names the file, the dotted field and, where the
YAML gives one, the line.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, get_args, get_origin

import yaml
from pydantic import AliasChoices, BaseModel, ValidationError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from bastion.config.errors import ConfigError, ConfigProblem
from bastion.config.models import UPSTREAM_NAME_RULE, BastionConfig

MAX_CONFIG_BYTES = 1024 * 1024
#: Aliases let a small YAML file expand into a huge tree ("billion laughs"): values are
#: counted after expansion, and nesting is bounded so no walk can exhaust the stack.
MAX_VALUES = 100_000
MAX_DEPTH = 64

#: `$${`, or `${NAME}` / `${NAME:-default}`, or a bare `${` (malformed: no name or no `}`).
_REFERENCE = re.compile(
    r"\$\$\{|\$\{(?:(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\})?")
_MERGE_TAG = "tag:yaml.org,2002:merge"
#: Values under these keys are credentials: never repeated in an error message.
_SECRET_KEYS = frozenset({"session_key", "env", "headers", "postgres", "bearer", "secret"})

Location = tuple[str | int, ...]


def load_config(path: str | Path, *, environ: Mapping[str, str] | None = None) -> BastionConfig:
    """Read, interpolate and validate one configuration file (YAML, or an mcp.json file)."""
    path = Path(path)
    text = _read_text(path)
    root, data = _parse(path, text)
    if data is None:
        raise ConfigError(path, None, "the file is empty; declare at least `mcpServers`")
    if not isinstance(data, dict):
        raise ConfigError(path, None, f"the top level must be a mapping of settings (such as "
                          f"`mcpServers:`), not a {_yaml_type(data)}", line=1)
    data = _Interpolator(path, root, os.environ if environ is None else environ).run(data)
    try:
        config = BastionConfig.model_validate(data)
    except ValidationError as exc:
        problems = [_problem(error, root) for error in exc.errors(include_url=False)]
        raise ConfigError(path, problems=problems) from None
    config._source = path.absolute()
    config.anchor_paths()
    return config


def _read_text(path: Path) -> str:
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(path, None, "no such file; check the path") from None
    except IsADirectoryError:
        raise ConfigError(path, None, "is a directory; give the configuration file") from None
    except OSError as exc:
        raise ConfigError(path, None, f"cannot read the file: {exc.strerror or exc}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(path, None, f"the file is larger than {MAX_CONFIG_BYTES} bytes; a "
                          "configuration this large is a mistake")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(path, None, f"the file is not UTF-8 text (bad byte at offset "
                          f"{exc.start}); save it as UTF-8") from None


def _parse(path: Path, text: str) -> tuple[Node | None, Any]:
    """The YAML node tree (for line numbers) and the document it constructs."""
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None, None
        _check_keys(path, root, 0, set())
        return root, loader.construct_document(root)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = f"invalid YAML: {exc.problem or exc.context}"
        raise ConfigError(path, None, problem, line=mark.line + 1 if mark else None,
                          column=mark.column + 1 if mark else None) from None
    except yaml.YAMLError as exc:
        raise ConfigError(path, None, f"invalid YAML: {exc}") from None
    except RecursionError:
        raise ConfigError(path, None, f"the document is nested too deeply (more than "
                          f"{MAX_DEPTH} levels)") from None
    finally:
        loader.dispose()


def _check_keys(path: Path, node: Node, depth: int, seen: set[int]) -> None:
    """Refuse duplicate keys (YAML would silently keep the last) and absurd nesting."""
    if id(node) in seen:
        return
    seen.add(id(node))
    if depth > MAX_DEPTH:
        raise ConfigError(path, None, f"the document is nested more than {MAX_DEPTH} levels "
                          "deep", line=node.start_mark.line + 1)
    if isinstance(node, MappingNode):
        first_lines: dict[tuple[str, str], int] = {}
        for key, value in node.value:
            if isinstance(key, ScalarNode) and key.tag != _MERGE_TAG:
                line = key.start_mark.line + 1
                if (key.tag, key.value) in first_lines:
                    raise ConfigError(path, None, f"duplicate key {key.value!r} (first at line "
                                      f"{first_lines[key.tag, key.value]}); keep one", line=line)
                first_lines[key.tag, key.value] = line
            _check_keys(path, key, depth + 1, seen)
            _check_keys(path, value, depth + 1, seen)
    elif isinstance(node, SequenceNode):
        for item in node.value:
            _check_keys(path, item, depth + 1, seen)


class _Interpolator:
    """Substitutes `${...}` in every string value, collecting every problem before failing."""

    def __init__(self, path: Path, root: Node | None, environ: Mapping[str, str]) -> None:
        self.path, self.root, self.environ = path, root, environ
        self.problems: list[ConfigProblem] = []
        self.budget = MAX_VALUES

    def run(self, data: dict[str, Any]) -> dict[str, Any]:
        result = self._walk(data, ())
        if self.problems:
            raise ConfigError(self.path, problems=self.problems)
        return result

    def _walk(self, value: Any, loc: Location) -> Any:
        self.budget -= 1
        if self.budget < 0:
            raise ConfigError(self.path, None, f"the document holds more than {MAX_VALUES} "
                              "values once its aliases are expanded")
        if isinstance(value, str):
            return self._substitute(value, loc) if "${" in value else value
        if isinstance(value, dict):
            return {key: self._walk(item, (*loc, key)) for key, item in value.items()}
        if isinstance(value, list):
            return [self._walk(item, (*loc, index)) for index, item in enumerate(value)]
        return value

    def _substitute(self, text: str, loc: Location) -> str:
        def replace(match: re.Match[str]) -> str:
            if match.group(0) == "$${":
                return "${"
            name, default = match.group("name"), match.group("default")
            if name is None:
                self._add(loc, "malformed ${...}: write ${NAME} or ${NAME:-default}, or $${ "
                               "for a literal ${")
                return ""
            value = self.environ.get(name)
            if default is not None and not value:
                return default
            if value is None:
                self._add(loc, f"environment variable {name} is not set; set it, or give a "
                               f"default with ${{{name}:-default}}")
                return ""
            return value

        return _REFERENCE.sub(replace, text)

    def _add(self, loc: Location, problem: str) -> None:
        self.problems.append(ConfigProblem(_dotted(loc), problem, _line_of(self.root, loc)))


def _problem(error: Any, root: Node | None) -> ConfigProblem:
    """One pydantic error as a problem in the file's own words."""
    loc: Location = tuple(error["loc"])
    kind, message, value = error["type"], error["msg"], error.get("input")
    if kind == "extra_forbidden":
        message = _unknown_key(loc)
    elif loc[-1:] == ("[key]",):
        # Only upstream names are constrained keys; pydantic would quote the regex.
        loc = loc[:-1]
        message = f"not a valid upstream name: {UPSTREAM_NAME_RULE}"
    else:
        message = message.removeprefix("Value error, ")
        if kind in ("string_type", "str_type") and isinstance(value, bool):
            message += " (quote it in YAML to make it a string)"
        if not _SECRET_KEYS.intersection(str(part) for part in loc) and _is_scalar(value):
            message += f" (got {_show(value)})"
    return ConfigProblem(_dotted(loc) or None, message, _line_of(root, loc))


def _unknown_key(loc: Location) -> str:
    if loc == ("servers",):
        return "give the upstreams under `mcpServers` or under `servers`, not both"
    allowed = _allowed_keys(loc[:-1])
    if not allowed:
        return "unknown key"
    close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown key; {hint}allowed here: {', '.join(allowed)}"


def _allowed_keys(loc: Location) -> list[str]:
    """The keys the model at `loc` accepts (empty when `loc` is not a model)."""
    model: type[BaseModel] = BastionConfig
    parts = iter(loc)
    for part in parts:
        fields = {key: field for name, field in model.model_fields.items()
                  for key in (name, field.alias, *_choices(field.validation_alias)) if key}
        field = fields.get(str(part))
        annotation = field.annotation if field else None
        if get_origin(annotation) is dict:
            next(parts, None)  # the entry's own name, e.g. an upstream's
            annotation = get_args(annotation)[1]
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return [field.alias or name for name, field in model.model_fields.items() if name != "name"]


def _choices(alias: Any) -> list[str]:
    return [str(choice) for choice in alias.choices] if isinstance(alias, AliasChoices) else []


def _line_of(root: Node | None, loc: Location) -> int | None:
    """The line of the deepest key of `loc` present in the YAML (1-based), if any."""
    node, line = root, None
    for part in loc:
        if isinstance(node, MappingNode):
            # Last match: a key given after a `<<:` merge overrides the merged one.
            found = next((pair for pair in reversed(node.value)
                          if isinstance(pair[0], ScalarNode) and pair[0].value == str(part)), None)
            if found is None:
                break
            line, node = found[0].start_mark.line + 1, found[1]
        elif isinstance(node, SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _dotted(loc: Location) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text


def _is_scalar(value: Any) -> bool:
    return isinstance(value, str | int | float | bool) or value is None


def _show(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    if isinstance(value, str):
        return repr(value if len(value) <= 60 else value[:57] + "...")
    return str(value)


def _yaml_type(value: Any) -> str:
    return {list: "list", str: "string"}.get(type(value), type(value).__name__)
