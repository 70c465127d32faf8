"""Pub/Sub's rules for each topic: valid and unique physical names for the topic, its dead
letters and its subscriptions, and each subscription's push target.
"""

from __future__ import annotations

from collections.abc import Iterator

from infra import limits
from infra.config._issues import ConfigIssue
from infra.config._parts import Names, Parts, target_issues
from infra.naming import DEAD_LETTER_SUFFIX, Kind, physical_name

__all__ = ["topic_issues"]


def _pubsub_name_ok(name: str) -> bool:
    return bool(limits.PUBSUB_NAME_RE.fullmatch(name)) and not name.startswith(
        limits.PUBSUB_RESERVED_PREFIX
    )


def topic_issues(parts: Parts, prefix: str, names: Names) -> Iterator[ConfigIssue]:
    for topic, subs in parts.topics.items():
        path = f"{prefix}.topics.{topic}"
        for kind in (Kind.TOPIC, Kind.DEAD_LETTER_TOPIC, Kind.DEAD_LETTER_SUBSCRIPTION):
            physical = physical_name(kind, topic, parts.stack)
            if not _pubsub_name_ok(physical):
                yield ConfigIssue(
                    f"{path} (key)",
                    f"'{physical}' is not a valid Pub/Sub name (3-255 letters, digits and "
                    "-_.~+%, starting with a letter, not with 'goog')",
                )
                break
        for issue in (
            names.claim(
                "topic", physical_name(Kind.TOPIC, topic, parts.stack), f"{path} (key)", "topic"
            ),
            names.claim(
                "topic",
                physical_name(Kind.DEAD_LETTER_TOPIC, topic, parts.stack),
                f"{path} (key)",
                "dead-letter topic",
            ),
            names.claim(
                "subscription",
                physical_name(Kind.DEAD_LETTER_SUBSCRIPTION, topic, parts.stack),
                f"{path} (key)",
                "dead-letter subscription",
            ),
            # Pulumi resource names: the dead-letter topic and subscription are "<key>-dead-letter".
            names.claim("Pulumi topic", topic, f"{path} (key)", "Pulumi resource name"),
            names.claim(
                "Pulumi topic",
                f"{topic}-{DEAD_LETTER_SUFFIX}",
                f"{path} (key)",
                "Pulumi resource name",
            ),
            names.claim(
                "Pulumi subscription",
                f"{topic}-{DEAD_LETTER_SUFFIX}",
                f"{path} (key)",
                "Pulumi resource name",
            ),
        ):
            if issue is not None:
                yield issue
        for i, sub in enumerate(subs or []):
            if sub is None:
                continue
            sub_path = f"{path}.subscriptions[{i}]"
            yield from target_issues(parts, sub_path, sub.service, sub.path)
            logical = sub.logical_name(topic)
            physical = physical_name(Kind.SUBSCRIPTION, logical, parts.stack)
            if not _pubsub_name_ok(physical):
                yield ConfigIssue(
                    f"{sub_path}.name",
                    f"'{physical}' is not a valid Pub/Sub subscription name (3-255 letters, "
                    "digits and -_.~+%, starting with a letter, not with 'goog')",
                )
            for issue in (
                names.claim("subscription", physical, sub_path, "subscription"),
                names.claim("Pulumi subscription", logical, sub_path, "Pulumi resource name"),
            ):
                if issue is not None:
                    yield issue
