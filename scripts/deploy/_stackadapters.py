"""The real adapters a deploy of one stack runs with, from the stack's name and the run's
options: the local platform for ``--stack local`` (the prod topology on the emulators, running
the deployed commit's code) or the cloud's (Automation API, Cloud Run and its traffic, Cloud
Monitoring, Secret Manager, Artifact Registry, Cloud Build, Firestore); the preflight; the
Firestore of the deployment records; and the adoption check of ``--check-existing``.

Failures raise :class:`DeployError` with a message that names the stack file, key or command
to run; a stack file that does not parse is left to the preflight, which names every error.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._clients import (
    LOCAL_STACK,
    cloud_rollout_adapters,
    firestore_for,
    local_platform,
    local_releases,
)
from ._cloudbuild import CloudBuildAdapter
from ._cloudrun import CloudRunAdapter
from ._errors import DeployError
from ._history import Deployment
from ._preflight import PlanPreflight
from ._pulumi import deploy_engine
from ._secrets import SecretManagerSecrets
from ._steps import Preflight
from ._targets import CloudTarget, LocalTarget, Target

__all__ = ["StackAdapters", "stack_adapters", "records_client", "existing_creates"]


@dataclass(frozen=True)
class StackAdapters:
    """What :func:`run_deploy` runs against for one stack."""

    target: Target
    preflight: Preflight
    builder: CloudBuildAdapter | None  # only for ``--builder cloudbuild`` (not a rollback)
    secrets: SecretManagerSecrets | None  # the webhook secret's reader; None: local


def stack_adapters(
    stack: str,
    root: Path,
    *,
    builder: str,
    allow_dirty: bool,
    lock_project: str | None,
    lock_database: str,
    rollback_to: Deployment | None = None,
) -> StackAdapters:
    """The adapters of ``stack``: the local platform's for :data:`LOCAL_STACK`, else the
    cloud's, with the lock's Firestore in ``lock_project`` (default: the stack's project)."""
    overrides = dict(rollback_to.images) if rollback_to is not None else None
    if stack == LOCAL_STACK:
        platform = local_platform(root)
        # The services run the deployed commit's code (a rollback then really serves the
        # previous release); --allow-dirty runs the work tree, and cannot roll back.
        releases = None if allow_dirty else local_releases(root, platform)
        plan_stack = getattr(platform, "plan_stack", "prod")
        plan = PlanPreflight(root, overrides=overrides)

        def preflight(_stack: str):
            return plan(plan_stack)

        # No Secret Manager locally: PLATFORM_NOTIFY_WEBHOOK only.
        return StackAdapters(LocalTarget(platform, releases=releases), preflight, None, None)
    rollout, secrets = cloud_rollout_adapters(_stack_project(stack, root))
    target = CloudTarget(
        engine=deploy_engine(root),
        inspector=CloudRunAdapter(),
        firestore_factory=lambda info: firestore_for(
            lock_project or (info.project if info else None), lock_database
        ),
        **rollout,
    )
    image_builder = None
    if builder == "cloudbuild" and rollback_to is None:
        image_builder = _cloud_builder(stack, root)
    return StackAdapters(target, PlanPreflight(root, overrides=overrides), image_builder, secrets)


def records_client(stack: str, root: Path, lock_project: str | None, lock_database: str) -> Any:
    """The Firestore client of ``stack``'s deployment records (which live beside the lock)."""
    if stack == LOCAL_STACK and not lock_project:
        # The records `deploy --stack local` wrote: the running local platform's Firestore.
        from scripts.local import NotRunning, running_firestore

        try:
            return running_firestore(lock_database)
        except NotRunning as exc:
            raise DeployError(str(exc)) from None
    return firestore_for(lock_project or _stack_project(stack, root), lock_database)


def existing_creates(changes: Any, plan: Any) -> list[str]:
    """The preview's creates that exist already (``scripts.adopt``), as "type name (id)"."""
    from scripts.adopt import GoogleLookups, existing_among, resolve_credentials

    with GoogleLookups(resolve_credentials()) as google:
        found = existing_among(changes, plan.resources if plan else (), google.lookups())
    return [f"{d.resource.describe()} ({d.import_id})" for d in found]


def _stack_project(stack: str, root: Path) -> str | None:
    from scripts.plan import load_stack_file

    try:
        return load_stack_file(stack, root).get("gcp:project")
    except Exception:  # noqa: BLE001 - preflight reports a bad stack file properly
        return None


def _cloud_builder(stack: str, root: Path) -> CloudBuildAdapter | None:
    """The Cloud Build adapter from the stack's ``platform.deploy.cloudbuild`` (the bootstrap's
    build identity and source bucket); a missing key raises DeployError naming it."""
    from infra.config import ConfigError, parse_config
    from scripts.plan import load_stack_file, project_name

    try:
        config = parse_config(stack, load_stack_file(stack, root), project_name(root))
    except ConfigError:
        return None  # preflight reports every config error, with its key
    return CloudBuildAdapter.for_stack(config, root)
