"""A Cloud Scheduler job calling a service path with an OIDC token."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

from infra.config import ScheduleConfig, StackConfig
from infra.durations import api_duration
from infra.naming import Kind
from infra.options import child_options

__all__ = ["Schedule", "ScheduleArgs"]


@dataclass(frozen=True)
class ScheduleArgs:
    key: str
    config: ScheduleConfig
    stack: StackConfig
    url: pulumi.Input[str]  # the target service's URL
    identity_email: pulumi.Input[str]  # resolves after its invoker binding on the target


class Schedule(pulumi.ComponentResource):
    job_name: pulumi.Output[str]

    def __init__(
        self, name: str, args: ScheduleArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("platform:index:Schedule", name, None, opts)
        cfg, job = args.stack, args.config
        resource = gcp.cloudscheduler.Job(
            name,
            project=cfg.project,
            region=cfg.region,
            name=cfg.name(Kind.SCHEDULER_JOB, args.key),
            schedule=job.schedule,
            time_zone=job.time_zone,
            # How long Scheduler waits for the response before counting a failed attempt.
            attempt_deadline=api_duration(job.attempt_deadline_seconds),
            retry_config=gcp.cloudscheduler.JobRetryConfigArgs(
                retry_count=job.retry_count,
                min_backoff_duration=api_duration(job.min_backoff_seconds),
                max_backoff_duration=api_duration(job.max_backoff_seconds),
            ),
            http_target=gcp.cloudscheduler.JobHttpTargetArgs(
                uri=pulumi.Output.concat(args.url, job.path),
                http_method=job.http_method,
                # Cloud Run admits only calls with an ID token whose audience is its URL.
                # https://cloud.google.com/run/docs/triggering/using-scheduler
                oidc_token=gcp.cloudscheduler.JobHttpTargetOidcTokenArgs(
                    service_account_email=args.identity_email,
                    audience=args.url,
                ),
            ),
            opts=child_options(self, opts),
        )
        self.job_name = resource.name
        self.register_outputs({"job_name": self.job_name})
