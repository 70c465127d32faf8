"""Offline plan time and peak memory as the topology grows, against a bare mock program.

For generated topologies of N services (default 2, 50, 200), each with a topic pushed to
the next service, a schedule, and a secret on every tenth service, this measures:

* **program**: ``scripts.plan.evaluate_stack`` (config parsing and validation,
  components, the image content hash, the real ``infra/__main__.py``);
* **bare**: a flat program registering the same resource types and counts with the same
  output wiring (URLs into push endpoints, emails into IAM members), and nothing else: no
  components, no config parsing, no validation.

Both run under the same mocks and recording monitor, each in a fresh subprocess (so peak RSS
is that run's own) with the same modules imported before the clock starts. Pulumi's mock
runtime itself grows faster than linearly, so the figure
that matters is the ratio program / bare (goal: <= 1.3x at every size). The ratio is taken
on CPU time (all threads of the process), best of N interleaved runs: on a shared machine the
wall time of one run swings with other jobs' load, CPU time much less.

    .venv/bin/python benchmarks/plan_scaling.py [--sizes 2 50 200] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PROJECT = "bench-project"
REGION = "us-west2"
STACK = "bench"


def topology(n: int) -> dict[str, Any]:
    """The ``config:`` mapping of a generated stack with ``n`` services."""
    services, topics, schedules, secrets = {}, {}, {}, {}
    for i in range(n):
        name = f"svc-{i:04d}"
        svc: dict[str, Any] = {
            "cpu": "1",
            "memory": "512Mi",
            "paths": ["/", "/tick"],
            "env": {"GCP_PROJECT_ID": "{project}"},
            "publishes": {"OUT_TOPIC": f"topic-{i:04d}"},
        }
        if i % 10 == 0:
            secrets[f"key-{i:04d}"] = {}
            svc["secret_env"] = {"API_KEY": f"key-{i:04d}"}
        services[name] = svc
        topics[f"topic-{i:04d}"] = {"subscriptions": [{"service": f"svc-{(i + 1) % n:04d}"}]}
        schedules[f"tick-{i:04d}"] = {"service": name, "path": "/tick", "schedule": "*/5 * * * *"}
    return {
        "gcp:project": PROJECT,
        "gcp:region": REGION,
        "platform": {
            "deploy": {"service_account": f"ci-deployer@{PROJECT}.iam.gserviceaccount.com"},
            "services": services,
            "topics": topics,
            "schedules": schedules,
            "secrets": secrets,
        },
    }


def make_checkout(n: int, where: Path) -> Path:
    """A checkout with one Dockerfile per generated service (the program hashes each)."""
    (where / "images").mkdir(parents=True)
    shutil.copy(ROOT / "Pulumi.yaml", where / "Pulumi.yaml")
    shutil.copytree(ROOT / "shared", where / "shared", ignore=shutil.ignore_patterns("__pycache__"))
    for i in range(n):
        (where / "images" / f"svc-{i:04d}.Dockerfile").write_text(
            "FROM python:3.11-slim\nWORKDIR /app\nCOPY shared/ /app/shared/\n"
        )
    return where


def bare_program(n: int, root: Path) -> None:
    """The same resources, inputs and output wiring as the program, flat: no components, no
    config parsing or validation, and no content hashing: every image gets a fixed tag, so the
    program's hashing of each image's files counts as its own overhead (the "hash s" column
    shows how much of it that is)."""
    import pulumi
    import pulumi_docker_build as docker_build
    import pulumi_gcp as gcp

    apis = [
        gcp.projects.Service(f"api-{a}", project=PROJECT, service=f"{a}.googleapis.com")
        for a in (
            "artifactregistry",
            "cloudscheduler",
            "firestore",
            "iam",
            "pubsub",
            "run",
            "secretmanager",
        )
    ]
    after = pulumi.ResourceOptions(depends_on=apis)

    def grant(kind, resource_name: str, role: str, member, /, **on):
        """One IAM binding of ``role`` for ``member`` on the resource ``on`` names."""
        return kind(resource_name, role=role, member=member, opts=after, **on)

    repo = gcp.artifactregistry.Repository(
        "images",
        project=PROJECT,
        location=REGION,
        repository_id="platform-images",
        format="DOCKER",
        opts=after,
    )
    db = gcp.firestore.Database(
        "firestore",
        project=PROJECT,
        name="(default)",
        location_id=REGION,
        type="FIRESTORE_NATIVE",
        opts=after,
    )
    from shared.indexes import REQUIRED_INDEXES

    for spec in REQUIRED_INDEXES:
        gcp.firestore.Index(
            f"index-{spec.name}",
            project=PROJECT,
            database=db.name,
            collection=spec.collection,
            fields=[],
        )
    deployer_member = pulumi.Output.from_input(
        f"serviceAccount:ci-deployer@{PROJECT}.iam.gserviceaccount.com"
    )
    gcp.artifactregistry.RepositoryIamMember(
        "deployer-pushes-images",
        repository=repo.repository_id,
        location=REGION,
        role="roles/artifactregistry.writer",
        member=deployer_member,
    )
    agent = gcp.organizations.get_project_output(project_id=PROJECT).number.apply(
        lambda num: f"serviceAccount:service-{num}@gcp-sa-pubsub.iam.gserviceaccount.com"
    )
    versions = {}
    for i in range(0, n, 10):
        secret = gcp.secretmanager.Secret(
            f"key-{i:04d}",
            secret_id=f"key-{i:04d}",
            replication=gcp.secretmanager.SecretReplicationArgs(
                auto=gcp.secretmanager.SecretReplicationAutoArgs()
            ),
            opts=after,
        )
        version = gcp.secretmanager.SecretVersion(
            f"key-{i:04d}-version", secret=secret.id, secret_data="[secret]", opts=after
        )
        versions[i] = (secret, version)
    urls, push_emails, sched_emails, runtime_members = {}, {}, {}, {}
    for i in range(n):
        name = f"svc-{i:04d}"
        runtime = gcp.serviceaccount.Account(
            f"{name}-runtime", account_id=f"run-{name}", opts=after
        )
        member = runtime.email.apply(lambda e: f"serviceAccount:{e}")
        runtime_members[i] = member
        acts_as = grant(
            gcp.serviceaccount.IAMMember,
            f"{name}-deployer-acts-as",
            "roles/iam.serviceAccountUser",
            deployer_member,
            service_account_id=runtime.name,
        )
        grants = []
        envs = [
            gcp.cloudrunv2.ServiceTemplateContainerEnvArgs(name="GCP_PROJECT_ID", value=PROJECT),
            gcp.cloudrunv2.ServiceTemplateContainerEnvArgs(
                name="OUT_TOPIC", value=f"topic-{i:04d}-bench"
            ),
        ]
        if i in versions:
            secret, version = versions[i]
            grants.append(
                grant(
                    gcp.secretmanager.SecretIamMember,
                    f"{name}-reads-key",
                    "roles/secretmanager.secretAccessor",
                    member,
                    secret_id=secret.secret_id,
                )
            )
            envs.append(
                gcp.cloudrunv2.ServiceTemplateContainerEnvArgs(
                    name="API_KEY",
                    value_source=gcp.cloudrunv2.ServiceTemplateContainerEnvValueSourceArgs(
                        secret_key_ref=gcp.cloudrunv2.ServiceTemplateContainerEnvValueSourceSecretKeyRefArgs(
                            secret=secret.secret_id, version=version.version
                        )
                    ),
                )
            )
        tag = "0" * 16  # the program's tag has this shape; computing it is the program's cost
        image = docker_build.Image(
            f"{name}-image",
            context=docker_build.BuildContextArgs(location="."),
            dockerfile=docker_build.DockerfileArgs(location=f"images/{name}.Dockerfile"),
            tags=[repo.repository_id.apply(lambda r, name=name, tag=tag: f"{r}/{name}:{tag}")],
            push=True,
            build_on_preview=False,
            opts=after,
        )
        svc = gcp.cloudrunv2.Service(
            name,
            name=name,
            location=REGION,
            deletion_protection=True,
            template=gcp.cloudrunv2.ServiceTemplateArgs(
                service_account=runtime.email,
                timeout="300s",
                containers=[
                    gcp.cloudrunv2.ServiceTemplateContainerArgs(
                        image=image.ref,
                        envs=envs,
                        resources=gcp.cloudrunv2.ServiceTemplateContainerResourcesArgs(
                            limits={"cpu": "1", "memory": "512Mi"}
                        ),
                    )
                ],
            ),
            opts=pulumi.ResourceOptions(depends_on=[*apis, *grants, acts_as]),
        )
        urls[i] = svc.uri
        for kind, store in (("pushes", push_emails), ("scheduler", sched_emails)):
            sa = gcp.serviceaccount.Account(
                f"{name}-{kind}-identity", account_id=f"{kind[:4]}-{name}", opts=after
            )
            binding = grant(
                gcp.cloudrunv2.ServiceIamMember,
                f"{name}-{kind}-invoker",
                "roles/run.invoker",
                sa.email.apply(lambda e: f"serviceAccount:{e}"),
                name=svc.name,
                location=REGION,
            )
            acts_as = grant(
                gcp.serviceaccount.IAMMember,
                f"{name}-{kind}-deployer-acts-as",
                "roles/iam.serviceAccountUser",
                deployer_member,
                service_account_id=sa.name,
            )
            store[i] = pulumi.Output.all(sa.email, binding.id, acts_as.id).apply(lambda v: v[0])
    for i in range(n):
        target = (i + 1) % n
        key = f"topic-{i:04d}"
        topic = gcp.pubsub.Topic(key, name=f"{key}-bench", opts=after)
        dl = gcp.pubsub.Topic(f"{key}-dead-letter", name=f"{key}-bench-dead-letter", opts=after)
        gcp.pubsub.Subscription(
            f"{key}-dead-letter",
            topic=dl.id,
            message_retention_duration="604800s",
            expiration_policy=gcp.pubsub.SubscriptionExpirationPolicyArgs(ttl=""),
            opts=after,
        )
        dl_pub = grant(
            gcp.pubsub.TopicIAMMember,
            f"{key}-dead-letter-agent-publisher",
            "roles/pubsub.publisher",
            agent,
            topic=dl.name,
        )
        grant(
            gcp.pubsub.TopicIAMMember,
            f"{key}-publisher",
            "roles/pubsub.publisher",
            runtime_members[i],
            topic=topic.name,
        )
        sub = gcp.pubsub.Subscription(
            f"{key}-svc",
            topic=topic.id,
            ack_deadline_seconds=600,
            push_config=gcp.pubsub.SubscriptionPushConfigArgs(
                push_endpoint=pulumi.Output.concat(urls[target], "/"),
                oidc_token=gcp.pubsub.SubscriptionPushConfigOidcTokenArgs(
                    service_account_email=push_emails[target], audience=urls[target]
                ),
            ),
            retry_policy=gcp.pubsub.SubscriptionRetryPolicyArgs(
                minimum_backoff="10s", maximum_backoff="600s"
            ),
            dead_letter_policy=gcp.pubsub.SubscriptionDeadLetterPolicyArgs(
                dead_letter_topic=dl.id, max_delivery_attempts=5
            ),
            expiration_policy=gcp.pubsub.SubscriptionExpirationPolicyArgs(ttl=""),
            opts=pulumi.ResourceOptions(depends_on=[*apis, dl_pub]),
        )
        grant(
            gcp.pubsub.SubscriptionIAMMember,
            f"{key}-agent-subscriber",
            "roles/pubsub.subscriber",
            agent,
            subscription=sub.name,
        )
    for i in range(n):
        gcp.cloudscheduler.Job(
            f"tick-{i:04d}",
            name=f"tick-{i:04d}-bench",
            region=REGION,
            schedule="*/5 * * * *",
            http_target=gcp.cloudscheduler.JobHttpTargetArgs(
                uri=pulumi.Output.concat(urls[i], "/tick"),
                oidc_token=gcp.cloudscheduler.JobHttpTargetOidcTokenArgs(
                    service_account_email=sched_emails[i], audience=urls[i]
                ),
            ),
            opts=after,
        )
    pulumi.export("service_urls", {f"svc-{i:04d}": url for i, url in urls.items()})


def warm_imports() -> None:
    """Import, in both kinds of process, every module either program uses.

    Imports are a fixed cost (about 0.3 s here: pulumi_gcp's modules, the docker SDK that the
    image hash uses, pydantic), paid once per process and unrelated to the topology's size.
    """
    import pulumi_docker_build  # noqa: F401
    import pulumi_gcp

    for module in (
        "artifactregistry",
        "cloudrunv2",
        "cloudscheduler",
        "firestore",
        "organizations",
        "projects",
        "pubsub",
        "secretmanager",
        "serviceaccount",
    ):
        getattr(pulumi_gcp, module)
    import infra.program  # noqa: F401


def measure_one(kind: str, n: int) -> dict[str, Any]:
    """One measurement in this (fresh) process: seconds, peak RSS, custom resources by type."""
    from scripts.plan import PlanMocks, evaluate_stack, run_program

    warm_imports()
    with tempfile.TemporaryDirectory() as tmp:
        checkout = make_checkout(n, Path(tmp))
        config = topology(n)
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        start, cpu_start = time.perf_counter(), time.process_time()
        if kind == "hash":  # what the program spends on image tags: one snapshot, as it does
            from infra.build_context import ContextSnapshot, image_tag

            snapshot = ContextSnapshot(checkout)
            for i in range(n):
                image_tag(f"svc-{i:04d}", snapshot=snapshot)
            resources = []
        elif kind == "program":
            resources = evaluate_stack(STACK, root=checkout, config=config, env={}).resources
        else:
            os.chdir(checkout)
            resources, _ = run_program(
                lambda: bare_program(n, checkout),
                project="prediction-platform",
                stack=STACK,
                mocks=PlanMocks(PROJECT, REGION),
            )
        seconds = time.perf_counter() - start
        cpu_seconds = time.process_time() - cpu_start
        rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    counts: dict[str, int] = {}
    for r in resources:
        if r.custom:
            counts[r.type] = counts.get(r.type, 0) + 1
    return {
        "kind": kind,
        "services": n,
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "peak_rss_mb": rss_after / 1024,
        "rss_growth_mb": (rss_after - rss_before) / 1024,
        "resources": sum(counts.values()),
        "counts": counts,
    }


def run_subprocess(kind: str, n: int) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--one", kind, str(n)],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2, 50, 200])
    parser.add_argument("--repeat", type=int, default=3, help="runs per point; best is kept")
    parser.add_argument("--one", nargs=2, metavar=("KIND", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure_one(args.one[0], int(args.one[1]))))
        return
    print(
        f"{'services':>8} {'resources':>9} | {'program':>8} {'bare':>8} {'ratio':>6} (CPU s) | "
        f"{'program':>8} {'bare':>8} (wall s) | {'program':>8} {'bare':>8} {'ratio':>6} (MB) | "
        f"{'hash s':>6}"
    )
    worst = 0.0
    for n in args.sizes:
        runs: dict[str, list[dict[str, Any]]] = {"program": [], "bare": []}
        for _ in range(args.repeat):  # interleaved, so both see the same machine load
            for kind in runs:
                runs[kind].append(run_subprocess(kind, n))
        program = min(runs["program"], key=lambda r: r["cpu_seconds"])
        bare = min(runs["bare"], key=lambda r: r["cpu_seconds"])
        if program["counts"] != bare["counts"]:
            raise SystemExit(f"bare program differs at {n}: {program['counts']} / {bare['counts']}")
        cpu_ratio = program["cpu_seconds"] / bare["cpu_seconds"]
        wall = {k: min(r["seconds"] for r in v) for k, v in runs.items()}
        hashing = run_subprocess("hash", n)["cpu_seconds"]
        mem = {k: min(r["peak_rss_mb"] for r in v) for k, v in runs.items()}
        worst = max(worst, cpu_ratio)
        print(
            f"{n:>8} {program['resources']:>9} | {program['cpu_seconds']:>8.2f} "
            f"{bare['cpu_seconds']:>8.2f} {cpu_ratio:>5.2f}x         | {wall['program']:>8.2f} "
            f"{wall['bare']:>8.2f}          | {mem['program']:>8.0f} {mem['bare']:>8.0f} "
            f"{mem['program'] / mem['bare']:>5.2f}x | {hashing:>6.2f}",
            flush=True,
        )
    print(f"worst CPU-time ratio {worst:.2f}x (goal <= 1.3x); best of {args.repeat} runs each")


if __name__ == "__main__":
    main()
