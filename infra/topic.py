"""A Pub/Sub topic with its push subscriptions, dead letters and publishers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi
import pulumi_gcp as gcp

from infra.config import DEAD_LETTER_RETENTION, StackConfig, TopicConfig
from infra.durations import api_duration
from infra.iam import Grants
from infra.naming import Kind, service_account_member
from infra.options import after, child_options
from infra.roles import PUBSUB_PUBLISHER, PUBSUB_SUBSCRIBER

__all__ = ["Topic", "TopicArgs", "PushTarget", "pubsub_agent_member"]

NEVER_EXPIRE = ""  # expiration_policy.ttl "" = never; the default deletes idle ones after 31 days


def pubsub_agent_member(project: str) -> pulumi.Output[str]:
    """The project's Pub/Sub service agent (``serviceAccount:service-<number>@gcp-sa-pubsub...``).

    It moves undeliverable messages to the dead-letter topic: it needs publisher there and
    subscriber on the source subscription.
    https://cloud.google.com/pubsub/docs/handling-failures#grant_forwarding_permissions
    """
    number = gcp.organizations.get_project_output(project_id=project).number
    return number.apply(
        lambda n: service_account_member(f"service-{n}@gcp-sa-pubsub.iam.gserviceaccount.com")
    )


@dataclass(frozen=True)
class PushTarget:
    """What a subscription needs of a Service component."""

    url: pulumi.Input[str]
    push_identity_email: pulumi.Input[str]


@dataclass(frozen=True)
class TopicArgs:
    key: str  # the config key (logical name)
    config: TopicConfig
    stack: StackConfig
    targets: Mapping[str, PushTarget]  # service name -> target
    pubsub_agent_member: pulumi.Input[str]
    publishers: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)  # service -> member


class Topic(pulumi.ComponentResource):
    """The topic, one push subscription per configured target, and a kept dead-letter topic.

    Names resolve only after the grants that make them usable: ``topic_name`` after its
    publishers', ``dead_letter_topic_name`` after the agent's publisher right, each
    subscription name after the agent's subscriber right on it.
    """

    topic_name: pulumi.Output[str]
    dead_letter_topic_name: pulumi.Output[str]
    dead_letter_subscription_name: pulumi.Output[str]
    subscription_names: list[pulumi.Output[str]]

    def __init__(self, name: str, args: TopicArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("platform:index:Topic", name, None, opts)
        cfg = args.stack
        child = child_options(self, opts)

        topic = gcp.pubsub.Topic(
            name, project=cfg.project, name=cfg.name(Kind.TOPIC, args.key), opts=child
        )
        dead_letter = gcp.pubsub.Topic(
            f"{name}-dead-letter",
            project=cfg.project,
            name=cfg.name(Kind.DEAD_LETTER_TOPIC, args.key),
            opts=child,
        )
        # A dead-letter topic with no subscription drops what it receives: this pull
        # subscription keeps dead letters for inspection and replay.
        # https://cloud.google.com/pubsub/docs/dead-letter-topics
        dead_letter_sub = gcp.pubsub.Subscription(
            f"{name}-dead-letter",
            project=cfg.project,
            name=cfg.name(Kind.DEAD_LETTER_SUBSCRIPTION, args.key),
            topic=dead_letter.id,
            message_retention_duration=DEAD_LETTER_RETENTION,
            retain_acked_messages=True,
            expiration_policy=gcp.pubsub.SubscriptionExpirationPolicyArgs(ttl=NEVER_EXPIRE),
            opts=child,
        )
        # The service agent publishes undeliverable messages to the dead-letter topic.
        on_dead_letter = Grants(
            gcp.pubsub.TopicIAMMember, child, project=cfg.project, topic=dead_letter.name
        )
        dl_publisher = on_dead_letter.grant(
            f"{name}-dead-letter-agent-publisher", PUBSUB_PUBLISHER, args.pubsub_agent_member
        )

        # Exactly the topics the service's config says it publishes to; nothing project-wide.
        on_topic = Grants(gcp.pubsub.TopicIAMMember, child, project=cfg.project, topic=topic.name)
        publishers = [
            on_topic.grant(f"{name}-publisher-{service}", PUBSUB_PUBLISHER, member)
            for service, member in sorted(args.publishers.items())
        ]

        self.subscription_names = []
        for sub in args.config.subscriptions:
            logical = sub.logical_name(args.key)
            target = args.targets[sub.service]
            subscription = gcp.pubsub.Subscription(
                logical,
                project=cfg.project,
                name=cfg.name(Kind.SUBSCRIPTION, logical),
                topic=topic.id,
                # Push to Cloud Run: a delivery whose request outlives the ack deadline is
                # redelivered while still running; 600 s (the maximum) unless set lower.
                # https://cloud.google.com/pubsub/docs/push#ack_deadline
                ack_deadline_seconds=sub.ack_deadline_seconds,
                push_config=gcp.pubsub.SubscriptionPushConfigArgs(
                    push_endpoint=pulumi.Output.concat(target.url, sub.path),
                    # Cloud Run only admits calls with an ID token for an invoker.
                    # https://cloud.google.com/run/docs/triggering/pubsub-push
                    oidc_token=gcp.pubsub.SubscriptionPushConfigOidcTokenArgs(
                        service_account_email=target.push_identity_email,
                        audience=target.url,
                    ),
                ),
                retry_policy=gcp.pubsub.SubscriptionRetryPolicyArgs(
                    minimum_backoff=api_duration(sub.min_backoff_seconds),
                    maximum_backoff=api_duration(sub.max_backoff_seconds),
                ),
                dead_letter_policy=gcp.pubsub.SubscriptionDeadLetterPolicyArgs(
                    dead_letter_topic=dead_letter.id,
                    max_delivery_attempts=sub.max_delivery_attempts,
                ),
                # Never expire: an idle subscription is deleted after 31 days by default, and
                # a batch platform is idle between seasons.
                expiration_policy=gcp.pubsub.SubscriptionExpirationPolicyArgs(ttl=NEVER_EXPIRE),
                # Dead-lettering fails silently until the agent may publish to the DL topic.
                opts=child_options(self, opts, depends_on=[dl_publisher]),
            )
            # ...and may acknowledge (subscribe) on the source subscription.
            on_subscription = Grants(
                gcp.pubsub.SubscriptionIAMMember,
                child,
                project=cfg.project,
                subscription=subscription.name,
            )
            agent_subscriber = on_subscription.grant(
                f"{logical}-agent-subscriber", PUBSUB_SUBSCRIBER, args.pubsub_agent_member
            )
            self.subscription_names.append(after(subscription.name, agent_subscriber))

        self.topic_name = after(topic.name, *publishers)
        self.dead_letter_topic_name = after(dead_letter.name, dl_publisher)
        self.dead_letter_subscription_name = dead_letter_sub.name
        self.register_outputs(
            {
                "topic_name": self.topic_name,
                "dead_letter_topic_name": self.dead_letter_topic_name,
                "dead_letter_subscription_name": self.dead_letter_subscription_name,
                "subscription_names": self.subscription_names,
            }
        )
