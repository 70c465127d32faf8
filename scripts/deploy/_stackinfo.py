"""What the pipeline needs to know about a stack, read from the program's offline plan.

The plan (``scripts.plan.evaluate_stack``) is the one description of the topology:
the Cloud Run services (name, project, region) to verify and inspect, and each service's image
(Artifact Registry repository and content-hash tag) to build remotely. Nothing here restates
the topology.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from policy.graph import T

from ._cloudbuild import ImageTarget, split_image
from ._cloudrun import ServiceRef
from ._errors import DeployError

__all__ = ["StackService", "StackInfo", "stack_info"]


@dataclass(frozen=True)
class StackService:
    service: str  # logical name (config key), also the image name in the repository
    ref: ServiceRef
    image: ImageTarget | None  # None when the plan does not build it (digest override)


@dataclass(frozen=True)
class StackInfo:
    stack: str
    project: str
    region: str
    services: dict[str, StackService]
    # The stack config's `deploy` block (check, rollout, notify); None: the defaults.
    deploy: Any = None
    # The service that takes `/start`, and the Secret Manager secret id of its API key (the
    # post-deploy check starts its synthetic batch there).
    coordinator: str | None = None
    api_key_secret: str | None = None
    # Pull subscriptions (the dead-letter ones: every push subscription has a pushConfig).
    dead_letter_subscriptions: tuple[str, ...] = ()

    def refs(self) -> dict[str, ServiceRef]:
        return {name: s.ref for name, s in self.services.items()}

    def image_targets(self) -> dict[str, ImageTarget]:
        return {name: s.image for name, s in self.services.items() if s.image is not None}


def _get(inputs: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        if key in inputs and inputs[key] not in (None, ""):
            return inputs[key]
    return None


def _config_value(config: Mapping[str, Any] | None, *keys: str) -> str | None:
    for key in keys:
        value = (config or {}).get(key)
        if isinstance(value, str) and value:
            return value
    return None


def stack_info(
    stack: str,
    resources: Iterable[Any],
    config: Mapping[str, Any] | None = None,
    *,
    deploy: Any = None,
    coordinator: str | None = None,
    api_key_secret: str | None = None,
) -> StackInfo:
    """Read services and images from the plan's resources (``type``, ``name``, ``inputs``).

    The logical service of a Cloud Run service is its name (the naming function keeps Cloud Run
    names bare); an image belongs to the service named by the last path segment of its tag.
    """
    resources = list(resources)
    project = _config_value(config, "gcp:project")
    region = _config_value(config, "gcp:region")
    images: dict[str, ImageTarget] = {}
    for res in resources:
        if res.type != T.IMAGE:
            continue
        tags = _get(res.inputs, "tags") or []
        for tagged in tags:
            if not isinstance(tagged, str) or "@" in tagged:
                continue
            repository, tag = split_image(tagged)
            service = repository.rsplit("/", 1)[-1]
            images[service] = ImageTarget(service, repository, tag)
    services: dict[str, StackService] = {}
    for res in resources:
        if res.type != T.CLOUD_RUN:
            continue
        name = _get(res.inputs, "name") or res.name
        svc_project = _get(res.inputs, "project") or project
        svc_region = _get(res.inputs, "location") or region
        if not svc_project or not svc_region:
            raise DeployError(
                f"stack '{stack}': Cloud Run service '{name}' has no project/region in the plan "
                "(set gcp:project and gcp:region in Pulumi.<stack>.yaml)"
            )
        services[name] = StackService(
            service=name,
            ref=ServiceRef(name, name, svc_project, svc_region),
            image=images.get(name),
        )
    if not services:
        raise DeployError(f"stack '{stack}': the plan declares no Cloud Run service")
    dead_letter_subs = tuple(
        sorted(
            str(_get(res.inputs, "name") or res.name)
            for res in resources
            if res.type == T.SUBSCRIPTION and not _get(res.inputs, "pushConfig", "push_config")
        )
    )
    first = next(iter(services.values())).ref
    return StackInfo(
        stack,
        project or first.project,
        region or first.region,
        services,
        deploy=deploy,
        coordinator=coordinator,
        api_key_secret=api_key_secret,
        dead_letter_subscriptions=dead_letter_subs,
    )
