"""Cloud Run's traffic split through the official ``run_v2`` client."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CANDIDATE_TAG", "CloudRunTraffic", "TrafficError", "TrafficState"]

#: The tag the new revision gets: Cloud Run serves it at https://candidate---<service-url>
#: (https://cloud.google.com/run/docs/rollouts-rollbacks-traffic-migration#tags).
CANDIDATE_TAG = "candidate"
TIMEOUT_S = 60.0


class TrafficError(Exception):
    """Cloud Run refused or failed a traffic read or change (the message says which)."""


@dataclass(frozen=True)
class TrafficState:
    latest_ready: str | None  # short revision name
    split: dict[str, int] = field(default_factory=dict)  # revision -> percent (resolved)
    tags: dict[str, str] = field(default_factory=dict)  # tag -> revision
    tag_urls: dict[str, str] = field(default_factory=dict)  # tag -> URL
    uri: str | None = None

    @property
    def serving(self) -> str | None:
        """The revision with the largest share (the one to return to)."""
        return max(self.split, key=lambda r: self.split[r]) if self.split else None


def _short(name: str) -> str:
    return name.rsplit("/", 1)[-1]


class CloudRunTraffic:
    """Reads and sets one service's split. ``client``: a ``run_v2.ServicesClient``."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def _get(self, resource: str) -> Any:
        from google.api_core import exceptions as gexc

        try:
            return self._client.get_service(name=resource, timeout=TIMEOUT_S)
        except gexc.GoogleAPICallError as exc:
            raise TrafficError(f"Cloud Run: cannot read {resource}: {exc.message}") from None

    def state(self, resource: str) -> TrafficState:
        svc = self._get(resource)
        return _state(svc)

    def split(
        self, resource: str, percents: Mapping[str, int], *, tag: tuple[str, str] | None = None
    ) -> TrafficState:
        """Serve ``percents`` (revision -> percent, summing to 100), by revision name, plus
        ``tag`` = (tag, revision) at 0% when given. Conditioned on the service's ``etag``, so a
        concurrent change (someone's ``gcloud run services update-traffic``) fails instead of
        being overwritten."""
        from google.api_core import exceptions as gexc
        from google.cloud import run_v2

        if sum(percents.values()) != 100:
            raise TrafficError(f"traffic must sum to 100%, got {dict(percents)}")
        svc = self._get(resource)
        kind = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION
        targets = [
            run_v2.TrafficTarget(type_=kind, revision=rev, percent=pct)
            for rev, pct in percents.items()
            if pct > 0
        ]
        if tag is not None:
            name, rev = tag
            for t in targets:
                if t.revision == rev:
                    t.tag = name
                    break
            else:
                targets.append(run_v2.TrafficTarget(type_=kind, revision=rev, percent=0, tag=name))
        svc.traffic = targets
        try:
            op = self._client.update_service(service=svc, timeout=TIMEOUT_S)
            updated = op.result(timeout=TIMEOUT_S * 5)
        except gexc.GoogleAPICallError as exc:
            raise TrafficError(
                f"Cloud Run: cannot set traffic of {resource} to {dict(percents)}: {exc.message}"
            ) from None
        return _state(updated)


def _state(svc: Any) -> TrafficState:
    split: dict[str, int] = {}
    tags: dict[str, str] = {}
    urls: dict[str, str] = {}
    ready = _short(svc.latest_ready_revision) or None
    for t in svc.traffic_statuses:
        rev = _short(t.revision) or ready  # a LATEST target resolves to the latest ready one
        if rev and t.percent:
            split[rev] = split.get(rev, 0) + int(t.percent)
        if t.tag and rev:
            tags[t.tag] = rev
            if t.uri:
                urls[t.tag] = t.uri
    return TrafficState(latest_ready=ready, split=split, tags=tags, tag_urls=urls, uri=svc.uri)
