"""The platform, composed from the stack config: what ``infra/__main__.py`` runs.

Order follows the data: services first (topic names reach them as strings from the naming
function, which breaks the coordinator -> request topic -> worker -> ready topic ->
coordinator cycle), then topics (their subscriptions need the services' URLs and push
identities), then schedules, then what watches them all (``infra/monitoring``: channels, the
batch-events metric, alerts and the dashboard, derived from the same config).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pulumi

from infra.apis import Apis, ApisArgs
from infra.config import PLATFORM_KEY, ConfigError, StackConfig, parse_stack_config
from infra.database import Database, DatabaseArgs
from infra.deploy_env import DeployEnv
from infra.image import Image, ImageArgs, pinned_image
from infra.monitoring import (
    Alerts,
    AlertsArgs,
    BatchEventsMetric,
    BatchEventsMetricArgs,
    Dashboard,
    DashboardArgs,
    NotificationChannels,
    NotificationChannelsArgs,
)
from infra.naming import service_account_member
from infra.registry import ImageRepository, ImageRepositoryArgs
from infra.schedule import Schedule, ScheduleArgs
from infra.secret import Secret, SecretArgs
from infra.service import SecretRef, Service, ServiceArgs
from infra.topic import PushTarget, Topic, TopicArgs, pubsub_agent_member

__all__ = ["load_stack", "compose", "required_indexes"]


def required_indexes() -> list[Any]:
    """The services' Firestore composite indexes (``shared/indexes.py``), if declared."""
    try:
        from shared.indexes import REQUIRED_INDEXES
    except ImportError:
        return []
    return list(REQUIRED_INDEXES)


def load_stack() -> tuple[StackConfig, DeployEnv, dict[str, pulumi.Output[str]]]:
    """The validated config, deploy environment and secret values; ``RunError`` lists all gaps.

    ``RunError`` makes the Pulumi CLI print the message without a traceback.
    """
    project_cfg, gcp_cfg = pulumi.Config(), pulumi.Config("gcp")
    stack = pulumi.get_stack()
    try:
        config = parse_stack_config(
            stack,
            project=gcp_cfg.get("project"),
            region=gcp_cfg.get("region"),
            platform=project_cfg.get(PLATFORM_KEY),
            project_name=pulumi.get_project(),
        )
        deploy = DeployEnv.from_environ(config.platform.services)
    except ConfigError as exc:
        raise pulumi.RunError(str(exc)) from None
    values: dict[str, pulumi.Output[str]] = {}
    missing = []
    for key in config.platform.secrets:
        config_key = config.secret_config_key(key)
        value = project_cfg.get_secret(config_key)
        if value is None:
            missing.append(
                f"  platform.secrets.{key}: no value; run "
                f"`pulumi config set --secret {config_key} VALUE --stack {stack}`"
            )
        else:
            values[key] = value
    if missing:
        raise pulumi.RunError("missing config secret(s):\n" + "\n".join(missing))
    return config, deploy, values


def compose(
    config: StackConfig,
    deploy: DeployEnv,
    secret_values: Mapping[str, pulumi.Input[str]],
    indexes: list[Any] | None = None,
) -> dict[str, Any]:
    """Declare every component; return the stack outputs."""
    p = config.platform
    apis = Apis("apis", ApisArgs(stack=config))
    after_apis = pulumi.ResourceOptions(depends_on=apis.services)
    # The bootstrap's deploy identity: its project roles are the bootstrap's; this stack grants
    # it only rights scoped to resources the stack owns.
    deployer_member = service_account_member(p.deploy.service_account)
    builder = p.deploy.cloudbuild
    repository = ImageRepository(
        "images",
        ImageRepositoryArgs(
            stack=config,
            deployer_member=deployer_member,
            builder_member=service_account_member(builder.service_account) if builder else None,
        ),
        after_apis,
    )
    Database(
        "batch-state",
        DatabaseArgs(stack=config, indexes=required_indexes() if indexes is None else indexes),
        after_apis,
    )
    pubsub_agent = pubsub_agent_member(config.project)

    secrets = {
        key: Secret(key, SecretArgs(key=key, stack=config, value=secret_values[key]), after_apis)
        for key in p.secrets
    }
    pushed = {sub.service for t in p.topics.values() for sub in t.subscriptions}
    scheduled = {job.service for job in p.schedules.values()}
    images = {
        name: pinned_image(name, svc, deploy)
        or Image(
            name,
            ImageArgs(
                service=name,
                stack=config,
                deploy=deploy,
                repository_url=repository.url,
                registry=repository.host,
                push_token=repository.push_token,
            ),
            after_apis,
        ).ref
        for name, svc in p.services.items()
    }
    services = {
        name: Service(
            name,
            ServiceArgs(
                name=name,
                config=svc,
                stack=config,
                deploy=deploy,
                image=images[name],
                deployer_member=deployer_member,
                secrets={
                    s: SecretRef(secret_id=secrets[s].secret_id, version=secrets[s].version)
                    for s in svc.secret_env.values()
                },
                pushed_by_pubsub=name in pushed,
                pubsub_agent_member=pubsub_agent,
                called_by_scheduler=name in scheduled,
            ),
            after_apis,
        )
        for name, svc in p.services.items()
    }
    topics = {
        key: Topic(
            key,
            TopicArgs(
                key=key,
                config=topic,
                stack=config,
                targets={
                    sub.service: PushTarget(
                        url=services[sub.service].url,
                        push_identity_email=services[sub.service].push_identity_email,
                    )
                    for sub in topic.subscriptions
                },
                pubsub_agent_member=pubsub_agent,
                publishers={
                    name: services[name].runtime_member
                    for name, svc in p.services.items()
                    if key in svc.publishes.values()
                },
            ),
            after_apis,
        )
        for key, topic in p.topics.items()
    }
    for key, job in p.schedules.items():
        Schedule(
            key,
            ScheduleArgs(
                key=key,
                config=job,
                stack=config,
                url=services[job.service].url,
                identity_email=services[job.service].scheduler_identity_email,
            ),
            after_apis,
        )
    if p.monitoring is not None:
        channels = NotificationChannels(
            "notify",
            NotificationChannelsArgs(stack=config, secret_values=secret_values),
            after_apis,
        )
        batch_events = BatchEventsMetric(
            "batch-events", BatchEventsMetricArgs(stack=config), after_apis
        )
        Alerts(
            "alerts",
            AlertsArgs(stack=config, channel_ids=channels.channel_ids, metrics=[batch_events]),
            after_apis,
        )
        Dashboard(
            "pipeline",
            DashboardArgs(stack=config, batch_events_metric_type=batch_events.metric_type),
            after_apis,
        )
    return {
        "service_urls": {name: s.url for name, s in services.items()},
        # What each service was deployed with (REGISTRY/PATH:TAG@sha256:..., or the pinned
        # digest): the deploy pipeline's verify step compares them with what Cloud Run serves.
        "image_refs": images,
        "topic_names": {key: t.topic_name for key, t in topics.items()},
        "dead_letter_subscriptions": {
            key: t.dead_letter_subscription_name for key, t in topics.items()
        },
        "repository_url": repository.url,
    }
