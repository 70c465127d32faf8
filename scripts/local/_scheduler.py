"""The local Cloud Scheduler: the graph's jobs at their cron, in their time zone, and on demand.

Each job calls the same method and path as in the cloud (its target URL rewritten to the local
service), with Cloud Scheduler's retry config (``retry_count`` more attempts, backoff doubling
from ``min_backoff`` up to ``max_backoff``) and attempt deadline. No OIDC token is attached: the
local services run without IAM.

Runs in-process (:meth:`LocalScheduler.serve` on a thread) or as its own process,
``python -m scripts.local._scheduler JOBS.json RUNS.jsonl``, which ``platform local up``
starts so the jobs keep running after ``up`` returns (:func:`ensure_scheduler`). Every run is
appended to the runs file.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import tenacity

from scripts import processes
from scripts.local._topology import JobSpec

__all__ = ["JobRun", "LocalScheduler", "call_job", "next_fire", "ensure_scheduler"]


@dataclass(frozen=True)
class JobRun:
    job: str
    trigger: str  # "cron" | "manual"
    started_at: str
    status: int | None  # HTTP status of the last attempt; None if no answer
    attempts: int
    elapsed_s: float
    body: str  # the last answer's body (truncated)

    @property
    def ok(self) -> bool:
        return _ok(self.status)

    def to_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok}


def next_fire(job: JobSpec, after: datetime) -> datetime:
    """The next time ``job``'s cron fires after ``after`` (aware), in UTC."""
    from croniter import croniter

    local = after.astimezone(ZoneInfo(job.time_zone))
    return croniter(job.schedule, local).get_next(datetime).astimezone(UTC)


def _ok(status: int | None) -> bool:
    return status is not None and 200 <= status < 300


def call_job(
    job: JobSpec, *, trigger: str = "manual", sleep: Callable[[float], None] = time.sleep
) -> JobRun:
    """One scheduled call, with the job's retries; never raises for HTTP or network errors.

    As Cloud Scheduler retries: up to ``retry_count`` more attempts after a non-2xx answer or
    no answer, waiting ``min_backoff`` and doubling up to ``max_backoff`` (no jitter), each
    attempt bounded by the job's attempt deadline.
    https://cloud.google.com/scheduler/docs/reference/rest/v1/projects.locations.jobs#retryconfig
    """
    started = datetime.now(UTC)
    t0 = time.monotonic()
    data = job.body.encode() if job.body else b"{}"

    def attempt() -> tuple[int | None, str]:
        req = urllib.request.Request(
            job.uri,
            data=data if job.method in ("POST", "PUT", "PATCH") else None,
            method=job.method,
            headers={"Content-Type": "application/json", "User-Agent": "Google-Cloud-Scheduler"},
        )
        try:
            with urllib.request.urlopen(req, timeout=job.attempt_deadline_seconds) as resp:
                return resp.status, resp.read().decode(errors="replace")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")
        except (urllib.error.URLError, OSError) as exc:
            return None, f"{type(exc).__name__}: {exc}"

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_result(lambda answer: not _ok(answer[0])),
        stop=tenacity.stop_after_attempt(job.retry_count + 1),
        wait=tenacity.wait_exponential(
            multiplier=max(float(job.min_backoff_seconds), 0.0),
            max=float(job.max_backoff_seconds),
        ),
        sleep=sleep,
        retry_error_callback=lambda state: state.outcome.result(),  # the last answer
    )
    status, body = retrying(attempt)
    return JobRun(
        job=job.name,
        trigger=trigger,
        started_at=started.isoformat(),
        status=status,
        attempts=retrying.statistics["attempt_number"],
        elapsed_s=round(time.monotonic() - t0, 3),
        body=body[:2000],
    )


class LocalScheduler:
    """Fires ``jobs`` at their cron until stopped; :meth:`run_now` fires one on demand."""

    def __init__(
        self,
        jobs: Sequence[JobSpec],
        *,
        runs_file: Path | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.jobs = {j.name: j for j in jobs}
        self.runs_file = runs_file
        self.clock = clock
        self.runs: list[JobRun] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def job(self, name: str) -> JobSpec:
        """A job by physical name (``check-stalled-prod``) or logical one (``check-stalled``)."""
        if name in self.jobs:
            return self.jobs[name]
        for j in self.jobs.values():
            if j.resource == name:
                return j
        raise KeyError(f"no scheduler job {name!r} (known: {', '.join(sorted(self.jobs))})")

    def _record(self, run: JobRun) -> None:
        with self._lock:
            self.runs.append(run)
            if self.runs_file is not None:
                with open(self.runs_file, "a") as f:
                    f.write(json.dumps(run.to_dict()) + "\n")

    def run_now(self, name: str) -> JobRun:
        run = call_job(self.job(name), trigger="manual")
        self._record(run)
        return run

    def next_runs(self) -> dict[str, datetime]:
        now = self.clock()
        return {name: next_fire(j, now) for name, j in self.jobs.items()}

    def serve(self) -> None:
        """Fire jobs at their times until :meth:`stop` (blocking)."""
        due = self.next_runs()
        while not self._stop.is_set():
            now = self.clock()
            for name, when in sorted(due.items(), key=lambda kv: kv[1]):
                if when <= now:
                    self._record(call_job(self.jobs[name], trigger="cron"))
                    due[name] = next_fire(self.jobs[name], max(now, when))
            wait = min((w - self.clock()).total_seconds() for w in due.values()) if due else 60
            self._stop.wait(timeout=min(max(wait, 0.05), 30.0))

    def start(self) -> LocalScheduler:
        self._thread = threading.Thread(target=self.serve, name="local-scheduler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


def ensure_scheduler(
    jobs: Sequence[JobSpec],
    *,
    running: processes.ProcRecord | None,
    jobs_file: Path,
    runs_file: Path,
    root: Path,
    log_path: Path,
) -> dict | None:
    """Run the scheduler process on ``jobs``: left alone if ``running`` already fires exactly
    these, else (re)started. The state's new ``scheduler`` entry, or None if unchanged."""
    payload = json.dumps([asdict(j) for j in jobs], indent=2, sort_keys=True)
    if (
        running
        and processes.alive(running)
        and jobs_file.exists()
        and jobs_file.read_text() == payload
    ):
        return None
    if running:
        processes.stop(running, grace=3)
    jobs_file.write_text(payload)
    record = processes.spawn(
        "scheduler",
        [sys.executable, "-m", "scripts.local._scheduler", str(jobs_file), str(runs_file)],
        env={
            "PATH": os.environ.get("PATH", ""),
            "PYTHONPATH": str(root),
            "HOME": os.environ.get("HOME", "/tmp"),
        },
        cwd=root,
        log_path=log_path,
    )
    return {"proc": record.to_dict(), "jobs": str(jobs_file), "runs": str(runs_file)}


def _main(argv: list[str]) -> int:
    import signal

    jobs_file, runs_file = Path(argv[0]), Path(argv[1])
    jobs = [JobSpec(**j) for j in json.loads(jobs_file.read_text())]
    scheduler = LocalScheduler(jobs, runs_file=runs_file)
    signal.signal(signal.SIGTERM, lambda *_: scheduler._stop.set())
    print(
        json.dumps(
            {
                "event": "scheduler started",
                "next": {k: v.isoformat() for k, v in scheduler.next_runs().items()},
            }
        ),
        flush=True,
    )
    try:
        scheduler.serve()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
