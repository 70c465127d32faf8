"""A deploy's dry run: the build it would do and ``pulumi preview``, with no lock taken and no
record written (a preview changes nothing). Exit 2 when the preview shows changes."""

from __future__ import annotations

import json

from scripts.cli_common import ExitCode

from ._errors import DeployError
from ._pulumi import ENV_COMMIT, ENV_IMAGE_OVERRIDES
from ._stackinfo import StackInfo
from ._steps import DeployOutcome, Run, summary_text
from ._targets import Target

__all__ = ["dry_run_deploy"]


def dry_run_deploy(
    run: Run, info: StackInfo, target: Target, builder, commit: str
) -> DeployOutcome:
    out = run.outcome
    request = run.request
    run.step("lock", "skipped", "dry run: no lock")
    overrides: dict[str, str] = {}
    try:
        run.step("build", "running")
        if request.rollback_to is not None:
            overrides = dict(request.rollback_to.images)
            run.step("build", "ok", f"would redeploy the digests of {request.rollback_to.id}")
        elif request.builder == "cloudbuild" and builder is not None:
            todo = []
            for name, t in sorted(info.image_targets().items()):
                digest = builder.existing_digest(t)
                if digest:
                    overrides[name] = f"{t.repository}@{digest}"
                else:
                    todo.append(name)
            run.step("build", "ok", f"would build: {', '.join(todo) or 'nothing'}")
        else:
            run.step("build", "skipped", "dry run: the program's build runs only on up")
        run.step("apply", "running")
        env = {ENV_COMMIT: commit}
        if overrides:
            env[ENV_IMAGE_OVERRIDES] = json.dumps(overrides, sort_keys=True)
        result = target.apply(request.stack, env=env, dry_run=True, on_output=run.reporter.output)
    except DeployError as exc:
        out.error = str(exc)
        run.step("apply", "failed", str(exc))
        run.skip_rest("apply", "dry run failed")
        return out
    out.summary = dict(result.summary)
    run.step("apply", "ok", f"preview: {summary_text(result.summary)}")
    run.skip_rest("apply", "dry run")
    out.exit_code = ExitCode.CHANGES if result.changed else ExitCode.OK
    return out
