"""Config problems with their key path (and line, for a stack file), and pydantic's errors
translated into them: "unknown key 'tiemout' (allowed: ...)" rather than pydantic's wording."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

__all__ = ["ConfigIssue", "ConfigError", "key_path", "pydantic_issues", "dedupe"]


@dataclass(frozen=True)
class ConfigIssue:
    """One problem: the key path it is at (``platform.services.x.cpu``), what to do, and the
    stack file line when the config came from a file."""

    path: str
    message: str
    line: int | None = None
    file: str | None = None

    def __str__(self) -> str:
        if self.line is None:
            return f"{self.path}: {self.message}"
        where = f"{self.file}:{self.line}" if self.file else f"line {self.line}"
        return f"{self.path}: {self.message} ({where})"


class ConfigError(ValueError):
    """Every problem found in a stack's config, each with its key path."""

    def __init__(self, issues: Iterable[ConfigIssue], stack: str = ""):
        self.issues = tuple(issues)
        self.stack = stack
        where = f"stack '{stack}'" if stack else "stack"
        lines = "\n".join(f"  {i}" for i in self.issues)
        super().__init__(f"invalid config for {where} ({len(self.issues)} error(s)):\n{lines}")


def key_path(prefix: str, loc: tuple[Any, ...]) -> str:
    """``("services", "x", "paths", 0)`` under ``platform`` -> ``platform.services.x.paths[0]``."""
    path = prefix
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part == "[key]":
            path += " (key)"
        else:
            path += f".{part}"
    return path


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def _model_fields(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The allowed keys at ``loc`` (for "unknown key" messages)."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int) or current is None:
            continue
        field = current.model_fields.get(part) if isinstance(current, type) else None
        if field is None:
            # a mapping key (service name, topic key...): the value type is the next model
            continue
        current = _inner_model(field.annotation)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


#: What to do about a missing required key, by its location.
_MISSING_HINTS = {
    ("deploy",): "set deploy.service_account to the deploy identity's email (the bootstrap's "
    "`deployer_email` output, e.g. ci-deployer@<project>.iam.gserviceaccount.com)",
    ("deploy", "service_account"): "the deploy identity's email (the bootstrap's "
    "`deployer_email` output, e.g. ci-deployer@<project>.iam.gserviceaccount.com)",
}
#: Keys that once existed and moved: where they went.
_MOVED_KEYS = {
    ("deploy", "account_id"): "the bootstrap creates the deploy identity; set "
    "deploy.service_account to its email",
    ("deploy", "project_roles"): "the deploy identity's project roles are granted by the "
    "bootstrap (infra/bootstrap/components.py DEPLOYER_PROJECT_ROLES), not by the stack it "
    "deploys",
}


def pydantic_issues(
    exc: ValidationError, prefix: str, root: type[BaseModel], base: tuple[Any, ...] = ()
) -> list[ConfigIssue]:
    """``exc`` (from validating ``root`` at ``base`` under ``prefix``) as config issues."""
    issues = []
    errors = exc.errors(include_url=False)
    item_errors = {tuple(e["loc"])[:i] for e in errors for i in range(len(e["loc"]))}
    for err in errors:
        loc = tuple(err["loc"])
        full = (*base, *loc)
        kind = err["type"]
        if kind == "too_short" and loc in item_errors:
            continue  # pydantic counts only the valid items; the invalid ones are reported
        if kind == "extra_forbidden":
            allowed = _model_fields(root, loc)
            msg = f"unknown key '{loc[-1]}'"
            if allowed:
                msg += f" (allowed: {', '.join(allowed)})"
            if full in _MOVED_KEYS:
                msg += f": {_MOVED_KEYS[full]}"
            issues.append(ConfigIssue(key_path(prefix, full[:-1]), msg))
            continue
        if kind == "value_error":
            msg = str(err["ctx"]["error"]) if "ctx" in err else err["msg"]
        elif kind == "missing":
            msg = "required key is missing"
            if full in _MISSING_HINTS:
                msg += f": {_MISSING_HINTS[full]}"
        elif kind == "too_short" and loc and loc[-1] == "subscriptions":
            msg = "a topic needs at least one subscription (messages to it would be lost)"
        elif kind == "string_type" and err.get("input") is None:
            msg = "is empty (YAML null): give it a value, or remove the key"
        elif kind == "string_type" and not isinstance(err.get("input"), dict | list):
            got = json.dumps(err.get("input"))
            msg = f"must be a string, got {_yaml_kind(err.get('input'))} {got}: quote it ('{got}')"
        else:
            msg = err["msg"]
            if isinstance(err.get("input"), str | int | float | bool):
                msg += f" (got {json.dumps(err['input'])})"
        issues.append(ConfigIssue(key_path(prefix, full), msg))
    return issues


def _yaml_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "the boolean"
    if isinstance(value, int):
        return "the integer"
    if isinstance(value, float):
        return "the number"
    return type(value).__name__


def dedupe(issues: Iterable[ConfigIssue]) -> list[ConfigIssue]:
    seen: set[ConfigIssue] = set()
    out = []
    for issue in issues:
        if issue not in seen:
            seen.add(issue)
            out.append(issue)
    return out
