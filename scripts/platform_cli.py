"""``platform``: the project's one operator CLI, a thin registry of the commands.

Every command lives in its own CLI module over a library (``scripts/<package>/``) and is
registered here twice: its one-line help in :data:`COMMANDS` (what ``platform --help``
lists) and the branch of :func:`_load` that imports it when the command runs, so
``platform plan`` does not load the deploy tooling's Google clients. The older console
scripts (``deploy``, ``deploy-lock``, ``drift``, ``batches``) run the same apps and stay as
aliases.

Exit codes (``scripts/cli_common.py``): 0 ok · 1 error · 2 changes/drift found · 3 lock held
or lost · 64 usage.
"""

from __future__ import annotations

import typer

from scripts.cli_common import lazy_group, make_app, run_app


def _load(command: str) -> typer.Typer:
    """The app of ``command``, its module imported now: plain imports, so ``lint-imports``
    checks them like any other (a module loaded by name would escape it)."""
    if command == "plan":
        from scripts.plan_cli import plan_app as app
    elif command == "preflight":
        from scripts.plan_cli import preflight_app as app
    elif command == "bootstrap-plan":
        from scripts.plan_cli import bootstrap_app as app
    elif command == "images":
        from scripts.images_cli import app
    elif command == "local":
        from scripts.local_cli import app
    elif command == "deploy":
        from scripts.deploy_cli import app
    elif command == "deploy-lock":
        from scripts.deploy_lock_cli import app
    elif command == "drift":
        from scripts.drift_cli import app
    elif command == "adopt":
        from scripts.adopt_cli import app
    elif command == "batches":
        from scripts.batches_cli import app
    else:
        raise KeyError(command)
    return app


#: Each command and the first paragraph of its own help: what ``platform --help`` lists without
#: importing it (tests/cli/test_platform.py holds each equal to the command's help).
COMMANDS: dict[str, str] = {
    "plan": "Evaluate the Pulumi program offline (mock runtime): inventory, then preflight rules.",
    "preflight": (
        "Run the preflight rules on the offline plan, the image check included, without the "
        "inventory: what the deploy pipeline checks before it takes the lock."
    ),
    "bootstrap-plan": (
        "Evaluate the one-time bootstrap program (infra/bootstrap) offline: its inventory."
    ),
    "images": "Check the services' container images offline (no Docker daemon).",
    "local": "The platform on Google's Firestore and Pub/Sub emulators: up, status, demo, down.",
    "deploy": (
        "Deploy a stack: preflight, tooling check, deploy lock, build, [b]pulumi up[/b], "
        "verification on Cloud Run, post-deploy check (a synthetic batch), progressive "
        "traffic, deployment record, lock release; a failed verify, check or rollout rolls "
        "back to the last good release by itself."
    ),
    "deploy-lock": "The per-stack deploy lock in Firestore: one deploy of a stack at a time.",
    "drift": (
        "Report config drift (changed outside Pulumi), code drift (commits behind main, per "
        "service the commits touching its build context) and image drift (running digest vs "
        "the current build context), run with the deployed commit and digests."
    ),
    "adopt": (
        "Look up every resource the program declares by its physical name (Google's official "
        "clients) and write Pulumi's bulk import file for those that exist; list what will be "
        "created and what could not be checked, with the reason."
    ),
    "batches": "Inspect and repair prediction batches (Firestore) and dead letters.",
}

app = make_app(
    help="Operate the prediction platform: plan, preflight, images, local, deploy, lock, "
    "drift, adopt, batches.",
    cls=lazy_group(COMMANDS, _load),
)


@app.callback()
def _root() -> None:
    """Operate the prediction platform: plan, preflight, images, local, deploy, lock, drift,
    adopt, batches."""


def main() -> None:
    run_app(app, prog_name="platform")


if __name__ == "__main__":
    main()
