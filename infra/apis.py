"""The Google APIs the platform's resources need, enabled before anything uses them."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from infra.config import StackConfig
from infra.options import FORMER_PLATFORM, child_options, enable_apis

__all__ = ["Apis", "ApisArgs", "REQUIRED_APIS"]

# Every API a resource of this program needs (enabled by enable_apis: never disabled on destroy).
REQUIRED_APIS = (
    "artifactregistry.googleapis.com",
    "cloudscheduler.googleapis.com",
    "firestore.googleapis.com",
    "iam.googleapis.com",
    "logging.googleapis.com",  # the batch-events log-based metric
    "monitoring.googleapis.com",  # alert policies, notification channels, the dashboard
    "pubsub.googleapis.com",
    "run.googleapis.com",
    "secretmanager.googleapis.com",
)


@dataclass(frozen=True)
class ApisArgs:
    stack: StackConfig
    apis: tuple[str, ...] = REQUIRED_APIS


class Apis(pulumi.ComponentResource):
    """One ``projects.Service`` per required API; other components ``depends_on`` ``services``."""

    services: list[pulumi.Resource]

    def __init__(self, name: str, args: ApisArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("platform:index:Apis", name, None, opts)
        # Declared under the former Platform component: kept, not re-created.
        child = child_options(self, opts, formerly_under=FORMER_PLATFORM)
        self.services = list(enable_apis(args.stack.project, args.apis, child))
        self.register_outputs({"services": [s.service for s in self.services]})
