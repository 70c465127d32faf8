"""``platform``: the project's one operator CLI, a thin registry of the commands.

Every command lives in its own CLI module over a library (``scripts/<package>/``) and is
registered here with one line: its one-line help (what ``platform --help`` lists) and the
function that imports it. A command's module is imported when that command runs, not when
``--help`` lists it: ``platform plan`` does not load the deploy tooling's Google clients.
The older console scripts (``deploy``, ``deploy-lock``, ``drift``, ``batches``) run the same
apps and stay as aliases.

Exit codes (``scripts/cli_common.py``): 0 ok · 1 error · 2 changes/drift found · 3 lock held
or lost · 64 usage.
"""

from __future__ import annotations

import typer

from scripts.cli_common import LazyCommand, lazy_group, make_app, run_app


def _plan() -> typer.Typer:
    from scripts.plan_cli import plan_app

    return plan_app


def _preflight() -> typer.Typer:
    from scripts.plan_cli import preflight_app

    return preflight_app


def _bootstrap_plan() -> typer.Typer:
    from scripts.plan_cli import bootstrap_app

    return bootstrap_app


def _images() -> typer.Typer:
    from scripts.images_cli import app

    return app


def _local() -> typer.Typer:
    from scripts.local_cli import app

    return app


def _deploy() -> typer.Typer:
    from scripts.deploy_cli import app

    return app


def _deploy_lock() -> typer.Typer:
    from scripts.deploy_lock_cli import app

    return app


def _drift() -> typer.Typer:
    from scripts.drift_cli import app

    return app


def _batches() -> typer.Typer:
    from scripts.batches_cli import app

    return app


#: name -> (the first paragraph of the command's own help, its loader); tests/infra/test_cli.py
#: checks each help against the command's.
COMMANDS: dict[str, LazyCommand] = {
    "plan": (
        "Evaluate the Pulumi program offline (mock runtime): inventory, then preflight rules.",
        _plan,
    ),
    "preflight": (
        "Run the preflight rules on the offline plan, the image check included, without the "
        "inventory: what the deploy pipeline checks before it takes the lock.",
        _preflight,
    ),
    "bootstrap-plan": (
        "Evaluate the one-time bootstrap program (infra/bootstrap) offline: its inventory.",
        _bootstrap_plan,
    ),
    "images": ("Check the services' container images offline (no Docker daemon).", _images),
    "local": (
        "The platform on Google's Firestore and Pub/Sub emulators: up, status, demo, down.",
        _local,
    ),
    "deploy": (
        "Deploy a stack: preflight, tooling check, deploy lock, build, [b]pulumi up[/b], "
        "verification on Cloud Run, deployment record, lock release.",
        _deploy,
    ),
    "deploy-lock": (
        "The per-stack deploy lock in Firestore: one deploy of a stack at a time.",
        _deploy_lock,
    ),
    "drift": (
        "Report config drift (changed outside Pulumi), code drift (commits behind main, per "
        "service the commits touching its build context) and image drift (running digest vs "
        "the current build context), run with the deployed commit and digests.",
        _drift,
    ),
    "batches": (
        "Inspect and repair prediction batches (Firestore) and dead letters.",
        _batches,
    ),
}

app = make_app(
    help="Operate the prediction platform: plan, preflight, images, local, deploy, lock, "
    "drift, batches.",
    cls=lazy_group(COMMANDS),
)


@app.callback()
def _root() -> None:
    """Operate the prediction platform: plan, preflight, images, local, deploy, lock, drift,
    batches."""


def main() -> None:
    run_app(app, prog_name="platform")


if __name__ == "__main__":
    main()
