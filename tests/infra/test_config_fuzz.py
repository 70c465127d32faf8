"""Property: any mutation of a committed stack config either validates or is refused with a
ConfigError whose every issue names a key path or a stack file line; never a traceback.

The config layer alone (loader + parse, ~3 ms an example), not the whole program under the
mocks (~1 s): 1,000 mutations of each stack per run, derandomized under CI=true
(tests/conftest.py). A second property mutates the YAML text itself, through the loader.
"""

from __future__ import annotations

import copy
import datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infra.config import (
    ConfigError,
    ConfigIssue,
    StackFile,
    load_stack_file,
    load_stack_text,
    parse_config,
)
from infra.paths import REPO_ROOT

EXAMPLES = 1000
STACKS = {s: load_stack_file(s, REPO_ROOT) for s in ("prod", "dev")}
TEXTS = {s: (REPO_ROOT / f"Pulumi.{s}.yaml").read_text() for s in ("prod", "dev")}

# Values aimed at the rules as well as at the types: GCP's reserved names and limits, YAML's
# non-string scalars, placeholders, trailing newlines, names that collide after derivation.
_tricky_text = st.sampled_from(
    [
        "", " ", "\n", "prediction-worker", "prediction-worker\n", "coordinator",
        "prediction-request", "prediction-request-dead-letter", "platform", "goog-x",
        "PORT", "K_SERVICE", "X_GOOGLE_A", "A=B", "{project}", "{projet}", "{}", "(default)",
        "nam5", "us-west9", "Etc/UTC", "posix/Etc/UTC", "Factory", "@daily", "0 0 L * *",
        "*/15 * * * *", "0 9 * * MON-FRI", "0.5", "0.08", "0.0805", "6", "500m", "16Gi",
        "64Gi", "127Mi", "/", "/start", "nope", "x" * 300, "é", "1e3",
        "ci-deployer@nba-props-platform.iam.gserviceaccount.com",
        "us-west2-docker.pkg.dev/p/r/i@sha256:" + "a" * 64,
    ]
)  # fmt: skip
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-5, 5000)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | _tricky_text
    | st.dates(datetime.date(1999, 1, 1), datetime.date(2030, 1, 1))
)
_keys = st.text(max_size=8) | _tricky_text
# One level of nesting is enough to hit every "wrong type here" rule; deeper values only cost
# generation time (hypothesis spends most of an example drawing).
json_values = (
    _scalars
    | st.lists(_scalars, max_size=3)
    | st.dictionaries(_keys, _scalars | st.lists(_scalars, max_size=2), max_size=3)
)


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


# Strategies built once (a strategy made inside a draw is re-validated on every example).
_PATHS = {s: st.sampled_from([p for p in _paths(dict(c)) if p]) for s, c in STACKS.items()}
_COUNT = st.integers(1, 3)
_ACTIONS = st.sampled_from(["replace", "delete", "add", "rename", "copy"])
_NEW_KEY = st.text(min_size=1, max_size=8) | _tricky_text


def _copy(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _copy(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_copy(v) for v in node]
    return node


@st.composite
def mutated(draw: st.DrawFn, stack: str) -> dict[str, Any]:
    original = STACKS[stack]
    config = StackFile(_copy(dict(original)), original.lines, original.file)  # keeps the lines
    for _ in range(draw(_COUNT)):
        path = draw(_PATHS[stack])
        parent: Any = config
        try:
            for part in path[:-1]:
                parent = parent[part]
            key = path[-1]
            action = draw(_ACTIONS)
            if action == "replace":
                parent[key] = draw(json_values)
            elif action == "delete":
                del parent[key]
            elif action == "add" and isinstance(parent, dict):
                parent[draw(_NEW_KEY)] = draw(json_values)
            elif action == "rename" and isinstance(parent, dict):
                parent[draw(_NEW_KEY)] = parent.pop(key)
            elif action == "copy" and isinstance(parent, dict):
                parent[draw(_tricky_text)] = copy.deepcopy(parent[key])
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed or replaced this path's parent
    return config


def _named(issue: ConfigIssue) -> bool:
    return issue.line is not None or issue.path.startswith(("platform", "gcp:"))


def _check(config: Any, stack: str) -> None:
    try:
        parse_config(stack, config)
    except ConfigError as exc:
        assert exc.issues
        for issue in exc.issues:
            assert _named(issue) and issue.message, issue
            str(issue)  # renders
    # Any other exception fails the test: a traceback is never the answer to a config.


_settings = settings(
    max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@_settings
@given(mutated("prod"))
def test_prod_mutations_validate_or_name_a_key_or_line(config: dict[str, Any]) -> None:
    _check(config, "prod")


@_settings
@given(mutated("dev"))
def test_dev_mutations_validate_or_name_a_key_or_line(config: dict[str, Any]) -> None:
    _check(config, "dev")


_yaml_bits = st.sampled_from(
    [
        "2024-01-01", "yes", "no", "on", "010", "0o17", "1_000", "12:30", "1e3", "~", "null",
        "!!binary aGk=", "!!set {a}", "&a x", "*a", "<<: {}", "[", "]", "{", "}", ": ", "- ",
        "'", '"', "#", "\t", "  ", "key: value", "cpu: 2", "cpu: \"3\"", "\\u0000", "\x00",
    ]
)  # fmt: skip


@st.composite
def mutated_text(draw: st.DrawFn, stack: str) -> str:
    lines = TEXTS[stack].splitlines()
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(lines) - 1))
        action = draw(st.sampled_from(["append", "replace", "duplicate", "delete", "value"]))
        bit = draw(_yaml_bits | st.text(max_size=6))
        if action == "append":
            lines[i] += bit
        elif action == "replace":
            lines[i] = lines[i][: draw(st.integers(0, len(lines[i])))] + bit
        elif action == "duplicate":
            lines.insert(i, lines[i])
        elif action == "delete":
            del lines[i]
        elif ":" in lines[i]:
            lines[i] = lines[i].split(":", 1)[0] + ": " + bit
    return "\n".join(lines) + "\n"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["prod", "dev"]).flatmap(lambda s: st.tuples(st.just(s), mutated_text(s))))
def test_yaml_text_mutations_load_or_name_a_key_or_line(case: tuple[str, str]) -> None:
    stack, text = case
    try:
        config = load_stack_text(text, f"Pulumi.{stack}.yaml", stack)
    except ConfigError as exc:
        assert exc.issues and all(i.message for i in exc.issues)
        for issue in exc.issues:
            assert issue.line is not None or issue.path.startswith(f"Pulumi.{stack}.yaml"), issue
        return
    _check(config, stack)
