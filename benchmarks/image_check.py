"""The offline image check's cost, against the one import it cannot avoid.

The check (``scripts.imagecheck.check_images``) proves each image's entry point imports from
what the image holds: it copies the build context's files, resolves the requirements'
closure, scans imports, and imports the app in an isolated interpreter. Its floor is that
import. This measures, each in a fresh process and as CPU time (the process and its
children; wall time on a shared machine swings with other jobs' load):

* **check**: ``check_images`` over both services;
* **bare**: importing each service's app (``services.<name>.main``) in the project's venv,
  one fresh process per service (the check imports each image's app on its own), nothing
  else.

The figure is the ratio check / bare, best of N interleaved runs. Goal: <= 3x, our own
judgement of "a check that costs a few imports"; it replaces a timed test assertion (the
isolated import under 1 s of CPU), which failed under load and is a benchmark's job.

    .venv/bin/python benchmarks/image_check.py [--repeat 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys

from infra.paths import REPO_ROOT

GOAL_RATIO = 3.0

CHECK = (
    "from scripts.imagecheck import SERVICES, check_images\n"
    "results = check_images(SERVICES)\n"
    "assert all(r.ok for r in results), [r.errors for r in results]\n"
)
BARE = tuple(f"import services.{name}.main\n" for name in ("coordinator", "worker"))


def _cpu_of(code: str) -> float:
    """CPU seconds (user + system) of a fresh interpreter running ``code``, with its children."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="interleaved runs of each")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()

    check, bare = [], []
    for _ in range(max(1, args.repeat)):
        check.append(_cpu_of(CHECK))
        bare.append(sum(_cpu_of(code) for code in BARE))
    figures = {
        "check_cpu_s": round(min(check), 3),
        "bare_cpu_s": round(min(bare), 3),
        "ratio": round(min(check) / min(bare), 2),
        "goal_ratio": GOAL_RATIO,
        "runs": len(check),
    }
    if args.json:
        print(json.dumps(figures))
    else:
        print(
            f"check {figures['check_cpu_s']:.3f} s CPU, bare import "
            f"{figures['bare_cpu_s']:.3f} s: ratio {figures['ratio']:.2f} "
            f"(goal <= {GOAL_RATIO:g}; best of {figures['runs']})"
        )
    return 0 if figures["ratio"] <= GOAL_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
