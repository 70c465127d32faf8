"""Drift: how production differs from what main would deploy, in three kinds.

* **code**: the commit deployed (the services' commit label, else the last recorded
  deployment) vs the current ``main``: commits behind, and per service the commits touching a
  file of its build context (the files that land in its image, and its Dockerfile).
* **image**: per service, the digest running vs the image of the current build context (its
  content-hash tag in Artifact Registry when a registry is reachable, else the tag recorded
  with the deployment).
* **config**: a Pulumi preview with refresh and expect-no-changes, run with the deployed commit
  and digests so new code on main does not show up as config drift: what changed outside
  Pulumi, per resource.

Each kind is computed independently; one that cannot be computed is an error in the report
(exit 1), never "no drift".
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.build_context import BuildContext, BuildContextError, dockerfile_for, image_tag

from ._cloudbuild import ImageBuilder, ImageTarget
from ._cloudrun import COMMIT_LABEL, RunInspector, ServiceRef, ServiceState
from ._errors import DeployError
from ._git import Commit, GitRepo
from ._history import Deployment
from ._pulumi import ENV_COMMIT, ENV_IMAGE_OVERRIDES, PulumiEngine, ResourceChange

__all__ = [
    "ServiceCodeDrift",
    "CodeDrift",
    "ImageDrift",
    "DriftReport",
    "context_paths",
    "code_drift",
    "image_drift",
    "config_drift",
    "compute_drift",
]


@dataclass(frozen=True)
class ServiceCodeDrift:
    service: str
    commits: tuple[Commit, ...]  # newest first


@dataclass(frozen=True)
class CodeDrift:
    deployed: str
    deployed_source: str  # "label" | "history"
    target: str  # the main commit compared against
    behind: int
    services: tuple[ServiceCodeDrift, ...]

    @property
    def drifted(self) -> bool:
        return self.behind > 0


@dataclass(frozen=True)
class ImageDrift:
    service: str
    deployed_digest: str | None
    current_tag: str
    current_digest: str | None  # of the current tag in the registry; None if not built / unknown
    deployed_tag: str | None  # from the deployment record
    drifted: bool
    detail: str


@dataclass
class DriftReport:
    stack: str
    code: CodeDrift | None = None
    images: list[ImageDrift] = field(default_factory=list)
    config: list[ResourceChange] | None = None
    errors: list[str] = field(default_factory=list)

    @property
    def drifted(self) -> bool:
        return bool(
            (self.code and self.code.drifted) or any(i.drifted for i in self.images) or self.config
        )

    def to_dict(self) -> dict[str, Any]:
        code = None
        if self.code:
            code = {
                "deployed_commit": self.code.deployed,
                "deployed_source": self.code.deployed_source,
                "target_commit": self.code.target,
                "commits_behind": self.code.behind,
                "services": {
                    s.service: [
                        {"sha": c.sha, "subject": c.subject, "author": c.author, "date": c.date}
                        for c in s.commits
                    ]
                    for s in self.code.services
                },
            }
        return {
            "stack": self.stack,
            "drift": self.drifted,
            "code": code,
            "images": [i.__dict__ for i in self.images],
            "config": None
            if self.config is None
            else [
                {"urn": c.urn, "type": c.type, "op": c.op, "diffs": list(c.diffs)}
                for c in self.config
            ],
            "errors": list(self.errors),
        }


def context_paths(service: str, root: Path) -> list[str]:
    """Repo-relative paths whose change changes the service's image: its Dockerfile, the files
    that land in the image, and ``.dockerignore`` (it decides what lands)."""
    ctx = BuildContext.for_service(service, root)
    paths = {dockerfile_for(service), ".dockerignore"}
    paths.update(f.context_path for f in ctx.image_files())
    return sorted(paths)


def code_drift(
    repo: GitRepo,
    *,
    deployed: str,
    deployed_source: str,
    target_ref: str,
    services: Mapping[str, list[str]],
) -> CodeDrift:
    """Commits in ``target_ref`` not in ``deployed``, and per service those touching its paths."""
    if not repo.has_commit(deployed):
        raise DeployError(
            f"the deployed commit {deployed} is not in this clone (fetch full history: "
            "`git fetch --unshallow` or actions/checkout with fetch-depth: 0)"
        )
    target = repo.resolve(target_ref)
    behind = repo.count_between(deployed, target)
    per_service = tuple(
        ServiceCodeDrift(name, tuple(repo.commits_between(deployed, target, paths)))
        for name, paths in sorted(services.items())
    )
    return CodeDrift(deployed, deployed_source, target, behind, per_service)


def image_drift(
    service: str,
    *,
    state: ServiceState | None,
    current_tag: str,
    record: Deployment | None,
    registry: ImageBuilder | None,
    target: ImageTarget | None,
) -> ImageDrift:
    deployed_digest = state.image_digest if state else None
    if deployed_digest is None and record is not None:
        deployed_digest = record.digests.get(service)
    deployed_tag = (getattr(record, "image_tags", None) or {}).get(service) if record else None
    if registry is not None and target is not None:
        current_digest = registry.existing_digest(
            ImageTarget(service, target.repository, current_tag)
        )
        if current_digest is None:
            return ImageDrift(
                service,
                deployed_digest,
                current_tag,
                None,
                deployed_tag,
                True,
                f"the current build context ({current_tag}) has never been built",
            )
        drifted = current_digest != deployed_digest
        detail = (
            f"running {deployed_digest}, current context builds {current_digest}"
            if drifted
            else "running the image of the current build context"
        )
        return ImageDrift(
            service, deployed_digest, current_tag, current_digest, deployed_tag, drifted, detail
        )
    if deployed_tag is None:
        return ImageDrift(
            service,
            deployed_digest,
            current_tag,
            None,
            None,
            True,
            "no registry lookup and no recorded tag: cannot tell which context is deployed",
        )
    drifted = deployed_tag != current_tag
    detail = (
        f"deployed context {deployed_tag}, current context {current_tag}"
        if drifted
        else "deployed from the current build context"
    )
    return ImageDrift(service, deployed_digest, current_tag, None, deployed_tag, drifted, detail)


def config_drift(
    engine: PulumiEngine,
    stack: str,
    *,
    commit: str,
    images: Mapping[str, str],
    on_output: Callable[[str], None] | None = None,
) -> list[ResourceChange]:
    """Resources a refresh-then-preview would change, with the deployed commit and images."""
    env = {ENV_COMMIT: commit, ENV_IMAGE_OVERRIDES: json.dumps(dict(images), sort_keys=True)}
    result = engine.preview(
        stack, env=env, on_output=on_output, refresh=True, expect_no_changes=True
    )
    return list(result.changes)


def compute_drift(
    *,
    stack: str,
    repo: GitRepo,
    root: Path,
    services: Mapping[str, ServiceRef],
    image_targets: Mapping[str, ImageTarget],
    last: Deployment | None,
    inspector: RunInspector | None,
    engine: PulumiEngine | None,
    registry: ImageBuilder | None,
    target_ref: str = "main",
    on_output: Callable[[str], None] | None = None,
) -> DriftReport:
    """All three kinds of drift; each failure lands in ``report.errors``, never raises."""
    report = DriftReport(stack)
    states: dict[str, ServiceState] = {}
    if inspector is not None:
        for name, ref in services.items():
            try:
                states[name] = inspector.describe(ref)
            except DeployError as exc:
                report.errors.append(f"{name}: {exc}")

    # Which commit is deployed: the services' label (what runs), else the record.
    labels = {
        s.labels.get(COMMIT_LABEL)
        for s in states.values()
        if s.exists and s.labels.get(COMMIT_LABEL)
    }
    deployed, source = None, None
    if len(labels) == 1:
        deployed, source = labels.pop(), "label"
    elif len(labels) > 1:
        report.errors.append(
            f"services carry different commit labels ({', '.join(sorted(labels))}): "
            "a partial deploy? see docs/runbooks.md"
        )
    if deployed is None and last is not None:
        deployed, source = last.commit, "history"
    if deployed is None:
        report.errors.append(
            f"no deployed commit for stack '{stack}': no service label and no recorded deployment"
        )
    else:
        try:
            paths = {name: context_paths(name, root) for name in services}
            report.code = code_drift(
                repo,
                deployed=deployed,
                deployed_source=source or "history",
                target_ref=target_ref,
                services=paths,
            )
        except (DeployError, BuildContextError, OSError) as exc:
            report.errors.append(f"code drift: {exc}")

    for name in sorted(services):
        try:
            tag = image_tag(name, root)
            report.images.append(
                image_drift(
                    name,
                    state=states.get(name),
                    current_tag=tag,
                    record=last,
                    registry=registry,
                    target=image_targets.get(name),
                )
            )
        except (DeployError, BuildContextError, OSError) as exc:
            report.errors.append(f"image drift of {name}: {exc}")

    if engine is not None:
        if last is None:
            report.errors.append(
                "config drift: no recorded deployment to take the deployed commit and images from"
            )
        else:
            try:
                report.config = config_drift(
                    engine, stack, commit=last.commit, images=last.images, on_output=on_output
                )
            except DeployError as exc:
                report.errors.append(f"config drift: {exc}")
    return report
