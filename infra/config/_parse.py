"""The entry point: a stack's raw config in, a :class:`StackConfig` or one ConfigError out.

Three steps, all of which always run so that every problem is reported at once:

1. what JSON cannot carry (a YAML date handed over as a Python ``date``, a non-string key):
   Pulumi passes the topology to the program as JSON, so neither could reach it;
2. shape and per-field limits of the whole topology (pydantic, strict JSON mode);
3. each part typed on its own, then the rules across fields and across the stack
   (``_stack_checks.py``) over those typed parts.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from infra import limits
from infra.config._deploy import DeployConfig
from infra.config._issues import ConfigError, ConfigIssue, dedupe, key_path, pydantic_issues
from infra.config._loader import locate
from infra.config._monitoring import MonitoringConfig
from infra.config._parts import Parts
from infra.config._schedules import ScheduleConfig
from infra.config._services import ServiceConfig
from infra.config._stack import (
    DEFAULT_REPOSITORY,
    PLATFORM_KEY,
    FirestoreConfig,
    PlatformConfig,
    SecretConfig,
    StackConfig,
)
from infra.config._stack_checks import stack_issues
from infra.config._topics import SubscriptionConfig

__all__ = ["parse_stack_config", "parse_config", "DEFAULT_PROJECT_NAME"]

DEFAULT_PROJECT_NAME = "prediction-platform"
M = TypeVar("M", bound=BaseModel)


def _json_issues(value: Any, prefix: str, loc: tuple = ()) -> Iterator[ConfigIssue]:
    """Values in the raw topology that JSON (and so Pulumi) cannot carry."""
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str):
                yield ConfigIssue(
                    key_path(prefix, (*loc, str(k))) + " (key)",
                    f"key {k!r} is not a string: quote it",
                )
            yield from _json_issues(v, prefix, (*loc, str(k)))
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            yield from _json_issues(v, prefix, (*loc, i))
    elif isinstance(value, float) and not math.isfinite(value):
        return  # JSON-encodable here; the field's own rules reject it
    elif value is not None and not isinstance(value, str | int | float | bool):
        yield ConfigIssue(
            key_path(prefix, loc),
            f"{value!s} is a {type(value).__name__}, not a string or number: quote it "
            f'("{value!s}")',
        )


def _jsonable(value: Any) -> Any:
    """``value`` with what JSON cannot carry made strings (already reported as issues)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _typed(model: type[M], raw: Any) -> M | None:
    try:
        return model.model_validate_json(json.dumps(raw))
    except ValidationError:
        return None


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _parts(raw: Mapping[str, Any], stack: str, project: Any, region: Any) -> Parts:
    topics: dict[str, list[SubscriptionConfig | None] | None] = {}
    for key, spec in _mapping(raw.get("topics")).items():
        subs = _mapping(spec).get("subscriptions")
        topics[key] = (
            [_typed(SubscriptionConfig, s) for s in subs] if isinstance(subs, list) else None
        )
    repo = raw.get("artifact_repository", DEFAULT_REPOSITORY)
    return Parts(
        stack=stack,
        project=project if isinstance(project, str) else None,
        region=region if isinstance(region, str) else None,
        services={k: _typed(ServiceConfig, v) for k, v in _mapping(raw.get("services")).items()},
        topics=topics,
        secrets={k: _typed(SecretConfig, v) for k, v in _mapping(raw.get("secrets")).items()},
        schedules={k: _typed(ScheduleConfig, v) for k, v in _mapping(raw.get("schedules")).items()},
        firestore=_typed(FirestoreConfig, raw.get("firestore", {})),
        deploy=_typed(DeployConfig, raw.get("deploy")),
        repository=repo if isinstance(repo, str) else None,
        monitoring=_typed(MonitoringConfig, raw["monitoring"]) if "monitoring" in raw else None,
    )


def _stack_key_issues(project: Any, region: Any) -> Iterator[ConfigIssue]:
    if not project:
        yield ConfigIssue("gcp:project", "required (pulumi config set gcp:project ID)")
    elif not isinstance(project, str) or not limits.PROJECT_ID_RE.fullmatch(project):
        yield ConfigIssue(
            "gcp:project",
            f"'{project}' is not a project id (6-30 lowercase letters, digits and hyphens, "
            "starting with a letter, not ending with a hyphen)",
        )
    if not region:
        yield ConfigIssue("gcp:region", "required (pulumi config set gcp:region REGION)")
    elif not isinstance(region, str) or not limits.REGION_RE.fullmatch(region):
        yield ConfigIssue("gcp:region", f"'{region}' is not a region like us-west2")


def parse_stack_config(
    stack: str,
    *,
    project: str | None,
    region: str | None,
    platform: str | Mapping[str, Any] | None,
    project_name: str = DEFAULT_PROJECT_NAME,
) -> StackConfig:
    """Validate a stack's config; raise :class:`ConfigError` with every problem found.

    ``platform`` is the ``<project>:platform`` value: the JSON text Pulumi hands the program,
    or an already-parsed mapping.
    """
    issues = list(_stack_key_issues(project, region))
    prefix = PLATFORM_KEY
    if platform is None:
        issues.append(
            ConfigIssue(
                prefix, f"required: the platform topology under {project_name}:{PLATFORM_KEY}"
            )
        )
        raise ConfigError(issues, stack)
    raw: Any = platform
    if isinstance(platform, str):
        try:
            raw = json.loads(platform)
        except json.JSONDecodeError as exc:
            issues.append(ConfigIssue(prefix, f"not valid JSON: {exc}"))
            raise ConfigError(issues, stack) from None
    if not isinstance(raw, Mapping):
        issues.append(ConfigIssue(prefix, f"must be a mapping (got {type(raw).__name__})"))
        raise ConfigError(issues, stack)
    issues.extend(_json_issues(raw, prefix))
    raw = _jsonable(raw)
    parsed: PlatformConfig | None = None
    try:
        # JSON mode so strictness means "JSON types": arrays become tuples, ints stay ints.
        parsed = PlatformConfig.model_validate_json(json.dumps(raw))
    except ValidationError as exc:
        issues.extend(pydantic_issues(exc, prefix, PlatformConfig))
    issues.extend(stack_issues(_parts(raw, stack, project, region), prefix))
    if issues or parsed is None:
        raise ConfigError(dedupe(issues), stack)
    assert isinstance(project, str) and isinstance(region, str)
    return StackConfig(stack=stack, project=project, region=region, platform=parsed)


def _qualify(key: str, project: str) -> str:
    return key if ":" in key else f"{project}:{key}"


def parse_config(
    stack: str, config: Mapping[str, Any], project: str = DEFAULT_PROJECT_NAME
) -> StackConfig:
    """The typed config of a stack file's ``config:`` mapping (keys as the file has them:
    ``gcp:project``, ``prediction-platform:platform`` or just ``platform``).

    A mapping from :func:`load_stack_file` knows its lines: each issue then names its line.
    """
    flat = {_qualify(str(k), project): v for k, v in config.items()}
    try:
        return parse_stack_config(
            stack,
            project=flat.get("gcp:project"),
            region=flat.get("gcp:region"),
            platform=flat.get(f"{project}:{PLATFORM_KEY}"),
            project_name=project,
        )
    except ConfigError as exc:
        prefixes = {
            str(k): (
                PLATFORM_KEY if _qualify(str(k), project) == f"{project}:{PLATFORM_KEY}" else str(k)
            )
            for k in config
        }
        raise ConfigError(locate(exc.issues, config, prefixes), stack) from None
