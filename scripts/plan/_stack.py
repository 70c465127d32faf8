"""The platform stack's offline plan: ``Pulumi.<stack>.yaml`` validated, then ``infra/`` run
under the mock runtime (:mod:`scripts.plan._mocks`).

No Pulumi CLI, no cloud: the stack's config is validated (every error at once,
:class:`infra.config.ConfigError`), handed to the mock runtime, and the unchanged program
runs. Config secrets cannot be decrypted here: each secret the program reads gets the
placeholder ``[secret]``, and secret values are never printed.
"""

from __future__ import annotations

import contextlib
import json
import os
import runpy
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from infra.config import ConfigError, StackConfig, StackFile, parse_config
from infra.config import load_stack_file as _load_stack_file
from infra.deploy_env import ENV_REPO_ROOT, DeployEnv
from infra.paths import PROGRAM, REPO_ROOT
from policy.graph import SECRET, Graph, Resource

from ._mocks import EVALUATION_LOCK, PlanMocks, run_program

__all__ = [
    "Plan",
    "PlanError",
    "evaluate_stack",
    "load_stack_file",
    "parse_config",
    "project_name",
]

DEFAULT_PROJECT_NAME = "prediction-platform"
SECRET_PLACEHOLDER = SECRET
_DEPLOY_ENV_VARS = (
    "PLATFORM_GIT_COMMIT",
    "PLATFORM_LOCK_TOKEN",
    "PLATFORM_IMAGE_OVERRIDES",
    ENV_REPO_ROOT,
)


class PlanError(RuntimeError):
    """The program failed under the mocks for a reason other than its config."""


@dataclass(frozen=True)
class Plan:
    stack: str
    config: StackConfig
    resources: list[Resource]
    outputs: dict[str, Any] = field(default_factory=dict)

    @property
    def graph(self) -> Graph:
        return Graph(self.resources)

    def custom(self) -> list[Resource]:
        return [r for r in self.resources if r.custom]

    def of_type(self, *types: str) -> list[Resource]:
        return [r for r in self.resources if r.type in types]

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self.custom():
            counts[r.type] = counts.get(r.type, 0) + 1
        return dict(sorted(counts.items()))


def load_stack_file(stack: str, root: Path | None = None) -> StackFile:
    """The ``config:`` mapping of ``Pulumi.<stack>.yaml``, read as strictly as Pulumi reads it
    (:func:`infra.config.load_stack_file`; ConfigError naming the line if not)."""
    return _load_stack_file(stack, root or REPO_ROOT)


def project_name(root: Path | None = None) -> str:
    path = (root or REPO_ROOT) / "Pulumi.yaml"
    if path.exists():
        doc = yaml.safe_load(path.read_text()) or {}
        return str(doc.get("name") or DEFAULT_PROJECT_NAME)
    return DEFAULT_PROJECT_NAME


def _qualify(key: str, project: str) -> str:
    return key if ":" in key else f"{project}:{key}"


def _is_secure(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"secure"}


def _engine_config(
    config: Mapping[str, Any], parsed: StackConfig, project: str
) -> tuple[dict[str, str], list[str]]:
    """``namespace:key -> str`` as the engine hands config to a program, plus secret keys."""
    values: dict[str, str] = {}
    secret_keys: list[str] = []
    for key, value in config.items():
        key = _qualify(key, project)
        if _is_secure(value):
            values[key] = SECRET_PLACEHOLDER
            secret_keys.append(key)
        elif isinstance(value, dict | list):
            # Keys the program does not validate may hold anything YAML reads (a date): the
            # engine would hand those over as their text too.
            values[key] = json.dumps(value, default=str)
        elif isinstance(value, bool):
            values[key] = str(value).lower()
        else:
            values[key] = str(value)
    # The offline plan cannot hold encrypted values: every secret the program reads gets the
    # placeholder (a real preview fails on a missing one, naming `pulumi config set --secret`).
    for secret in parsed.platform.secrets:
        key = f"{project}:{parsed.secret_config_key(secret)}"
        values[key] = SECRET_PLACEHOLDER
        if key not in secret_keys:
            secret_keys.append(key)
    return values, secret_keys


@contextlib.contextmanager
def _deploy_environ(env: Mapping[str, str] | None, root: Path) -> Iterator[None]:
    """The program reads the deploy variables from os.environ: set exactly ``env``'s."""
    saved = {k: os.environ.get(k) for k in _DEPLOY_ENV_VARS}
    try:
        if env is not None:
            for k in _DEPLOY_ENV_VARS:
                os.environ.pop(k, None)
            for k, v in env.items():
                os.environ[k] = v
        os.environ[ENV_REPO_ROOT] = str(root)
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def evaluate_stack(
    stack: str,
    *,
    root: Path | None = None,
    config: dict | None = None,
    env: dict | None = None,
) -> Plan:
    """Evaluate ``infra/`` for ``stack`` under the mock runtime.

    ``root``: where ``Pulumi.<stack>.yaml`` and the build context live (default: this repo).
    ``config``: the ``config:`` mapping to use instead of reading the stack file.
    ``env``: the deploy variables (``PLATFORM_GIT_COMMIT``, ``PLATFORM_LOCK_TOKEN``,
    ``PLATFORM_IMAGE_OVERRIDES``) to evaluate with; default: the process environment.

    Raises :class:`ConfigError` (every problem, with key paths) for invalid config or deploy
    variables, :class:`PlanError` when the program itself fails.
    """
    root = (root or REPO_ROOT).resolve()
    project = project_name(root)
    raw = config if config is not None else load_stack_file(stack, root)
    parsed = parse_config(stack, raw, project)
    DeployEnv.from_environ(parsed.platform.services, env if env is not None else os.environ)
    values, secret_keys = _engine_config(raw, parsed, project)

    def program() -> None:
        runpy.run_path(str(PROGRAM), run_name="__main__")

    with EVALUATION_LOCK, _deploy_environ(env, root):
        try:
            resources, outputs = run_program(
                program,
                project=project,
                stack=stack,
                mocks=PlanMocks(parsed.project, parsed.region),
                engine_config=values,
                secret_keys=secret_keys,
            )
        except ConfigError:
            raise
        except Exception as exc:
            import pulumi

            if isinstance(exc, pulumi.RunError):
                raise PlanError(str(exc)) from None
            raise PlanError(f"the program failed under the mocks: {exc!r}") from exc
    return Plan(stack=stack, config=parsed, resources=resources, outputs=outputs)
