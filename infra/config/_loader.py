"""Reading ``Pulumi.<stack>.yaml`` as strictly as Pulumi does, naming the line of each problem.

PyYAML reads YAML 1.1 and keeps the last of two equal keys; Pulumi's parser (Go, YAML 1.2)
refuses duplicate keys and reads ``yes``, ``010``, ``12:30`` or ``2024-01-01`` differently
(as strings, or as other numbers). So the same file could mean one thing to the offline plan
and another to ``pulumi up``. This loader refuses every such case, naming the line:

* a key given twice in one mapping;
* a mapping key that is not a string (``1:``, ``true:``);
* a plain scalar the two YAML versions read differently: dates and times, ``yes``/``no``/
  ``on``/``off``, octal ``010``, base-60 ``12:30``, ``0b1``, numbers with ``_`` -- quote it;
* values JSON cannot carry (``!!binary``, ``!!set``...), since Pulumi hands objects to the
  program as JSON.

The result is a ``dict`` (:class:`StackFile`) that also knows each key's line, so config
problems found later are reported with ``Pulumi.prod.yaml:42`` next to their key path.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from infra.config._issues import ConfigError, ConfigIssue, key_path
from infra.config._stack import PLATFORM_KEY

__all__ = ["StackFile", "load_stack_file", "load_stack_text", "locate"]

_STR = "tag:yaml.org,2002:str"
_JSON_TAGS = {
    _STR,
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
}
# Plain scalars both YAML versions read alike; any other plain int or float is read differently
# by YAML 1.1 (PyYAML: 010 is 8, 1_000 is 1000, 12:30 is 750) and YAML 1.2 (Pulumi), and a
# plain string that YAML 1.2 reads as a number (1e3, 0o17) is one too.
_PLAIN_INT = re.compile(r"[-+]?(?:0|[1-9][0-9]*)")
_PLAIN_FLOAT = re.compile(
    r"[-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)"
)
_YAML12_NUMBER = re.compile(r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+|0o[0-7]+")


class StackFile(dict):
    """A stack file's ``config:`` mapping; ``lines`` maps key paths (tuples) to their line."""

    def __init__(self, data: Mapping[str, Any], lines: Mapping[tuple, int], file: str):
        super().__init__(data)
        self.lines = dict(lines)
        self.file = file


def _why_ambiguous(node: yaml.ScalarNode) -> str | None:
    if node.style is not None:  # quoted or block scalar: always a string
        return None
    text = node.value
    if node.tag == "tag:yaml.org,2002:timestamp":
        return f"{text} is a date/time to YAML 1.1 and a string to Pulumi"
    if node.tag == "tag:yaml.org,2002:bool" and text.lower() not in ("true", "false"):
        return f"{text} is a boolean to YAML 1.1 and a string to Pulumi (write true or false)"
    if node.tag == "tag:yaml.org,2002:int" and not _PLAIN_INT.fullmatch(text):
        return f"{text} is read as a different number by YAML 1.1 and by Pulumi"
    if node.tag == "tag:yaml.org,2002:float" and not _PLAIN_FLOAT.fullmatch(text):
        return f"{text} is read as a different number by YAML 1.1 and by Pulumi"
    if node.tag == _STR and _YAML12_NUMBER.fullmatch(text):
        return f"{text} is a string to YAML 1.1 and a number to Pulumi"
    if node.tag not in _JSON_TAGS:
        return f"a {node.tag.rsplit(':', 1)[-1]} value cannot be stack config (JSON)"
    return None


class _Builder:
    def __init__(self, loader: yaml.SafeLoader, file: str):
        self.loader = loader
        self.file = file
        self.lines: dict[tuple, int] = {}
        self.issues: list[ConfigIssue] = []

    def issue(self, path: tuple, node: yaml.Node, message: str) -> None:
        self.issues.append(
            ConfigIssue(_dotted(path), message, line=node.start_mark.line + 1, file=self.file)
        )

    def build(self, node: yaml.Node, path: tuple) -> Any:
        if isinstance(node, yaml.MappingNode):
            own = len([k for k, _ in node.value if k.tag != "tag:yaml.org,2002:merge"])
            self.loader.flatten_mapping(node)  # `<<: *anchor` merge keys, as Pulumi has them
            merged = len(node.value) - own  # merged entries come first; own keys override them
            own_keys = {k.value for k, _ in node.value[merged:] if isinstance(k, yaml.ScalarNode)}
            out: dict[str, Any] = {}
            for i, (key_node, value_node) in enumerate(node.value):
                if i < merged and (key_node.value in own_keys or key_node.value in out):
                    continue
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag != _STR:
                    self.issue(
                        path,
                        key_node,
                        f"key {getattr(key_node, 'value', '?')!s} is not a string: quote it",
                    )
                    continue
                key = key_node.value
                here = (*path, key)
                if key in out or here in self.lines:
                    self.issue(
                        here,
                        key_node,
                        f"key '{key}' appears twice in this mapping (also line "
                        f"{self.lines[here]}): Pulumi refuses the file; keep one",
                    )
                    continue
                self.lines[here] = key_node.start_mark.line + 1
                out[key] = self.build(value_node, here)
            return out
        if isinstance(node, yaml.SequenceNode):
            items = []
            for i, item in enumerate(node.value):
                self.lines[(*path, i)] = item.start_mark.line + 1
                items.append(self.build(item, (*path, i)))
            return items
        why = _why_ambiguous(node)
        if why is not None:
            self.issue(path, node, f'{why}; quote it ("{node.value}") to mean the string')
            return node.value
        return self.loader.construct_object(node, deep=True)


def _dotted(path: tuple) -> str:
    """A document path as the config's issues name it: ``config.<project>:platform.x`` is
    ``platform.x``, other config keys keep their name (``gcp:project``)."""
    if path[:1] == ("config",) and len(path) > 1:
        top = str(path[1])
        top = PLATFORM_KEY if top == PLATFORM_KEY or top.endswith(f":{PLATFORM_KEY}") else top
        return key_path(top, path[2:])
    return key_path(str(path[0]), path[1:]) if path else "(document)"


def load_stack_text(text: str, file: str, stack: str = "") -> StackFile:
    """The ``config:`` mapping of a stack file's text; ConfigError naming each bad line."""
    try:
        loader = yaml.SafeLoader(text)
    except yaml.YAMLError as exc:  # the reader checks characters up front (e.g. \x1f)
        raise ConfigError([ConfigIssue(file, f"not valid YAML: {exc}")], stack) from None
    try:
        try:
            node = loader.get_single_node()
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = mark.line + 1 if mark is not None else None
            problem = getattr(exc, "problem", None) or str(exc)
            raise ConfigError(
                [
                    ConfigIssue(
                        file, f"not valid YAML: {problem}", line=line, file=file if line else None
                    )
                ],
                stack,
            ) from None
        builder = _Builder(loader, file)
        doc = builder.build(node, ()) if node is not None else {}
    finally:
        loader.dispose()
    if builder.issues:
        raise ConfigError(builder.issues, stack)
    config = doc.get("config") if isinstance(doc, dict) else None
    if not isinstance(config, dict):
        raise ConfigError([ConfigIssue(f"{file}: config", "missing or not a mapping")], stack)
    lines = {
        path[1:]: line
        for path, line in builder.lines.items()
        if len(path) > 1 and path[0] == "config"
    }
    return StackFile(config, lines, file)


def load_stack_file(stack: str, root: Path) -> StackFile:
    """The ``config:`` mapping of ``root/Pulumi.<stack>.yaml`` (ConfigError if unreadable)."""
    path = root / f"Pulumi.{stack}.yaml"
    if not path.exists():
        known = sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in root.glob("Pulumi.*.yaml"))
        raise ConfigError(
            [ConfigIssue(path.name, f"no such stack file (stacks: {', '.join(known)})")], stack
        )
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([ConfigIssue(path.name, f"cannot read: {exc}")], stack) from None
    return load_stack_text(text, path.name, stack)


_PARENT = re.compile(r"(?:\.[^.\[]+|\[\d+\])$")


def locate(
    issues: Iterable[ConfigIssue], config: Mapping[str, Any], prefixes: Mapping[str, str]
) -> list[ConfigIssue]:
    """``issues`` with the stack file line of their key (or its nearest parent) attached.

    ``prefixes``: the issue-path prefix of each top-level key of the file (``platform`` for
    ``prediction-platform:platform``); ``config`` without lines leaves the issues as they are.
    """
    lines = getattr(config, "lines", None)
    file = getattr(config, "file", None)
    if not lines:
        return list(issues)
    by_path: dict[str, int] = {}
    for loc, line in lines.items():
        prefix = prefixes.get(loc[0], loc[0])
        by_path.setdefault(key_path(prefix, loc[1:]), line)
    out = []
    for issue in issues:
        if issue.line is not None:
            out.append(issue)
            continue
        path = issue.path.removesuffix(" (key)")
        line = by_path.get(path)
        while line is None and _PARENT.search(path):
            path = _PARENT.sub("", path)
            line = by_path.get(path)
        out.append(ConfigIssue(issue.path, issue.message, line, file) if line else issue)
    return out
