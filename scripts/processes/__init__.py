"""Process supervision for the emulators and the local platform, on psutil.

Start a process in its own session (optionally dying with its parent, even on SIGKILL),
know it again from another shell by pid and start time, stop it with its whole tree, read
its memory::

    from scripts import processes

    rec = processes.spawn("svc", argv, env=env, cwd=root, log_path=log, port=port)
    processes.alive(rec)          # same pid and start time, not a zombie
    processes.stop(rec, grace=3)  # SIGTERM the tree, wait, SIGKILL what is left
    processes.poll(probe, done=bool, timeout=30, interval=0.1)  # readiness, with a deadline

Failure semantics: nothing here raises for a process that is gone or a pid that was
recycled; :func:`stop` returns whether anything was running.
"""

from scripts.processes._poll import poll
from scripts.processes._supervisor import (
    STOP_GRACE_S,
    ProcRecord,
    alive,
    disown,
    free_port,
    kill,
    launch,
    own,
    peak_rss_kib,
    rss_kib,
    spawn,
    stop,
    tail,
    track,
)

__all__ = [
    "ProcRecord",
    "STOP_GRACE_S",
    "launch",
    "track",
    "spawn",
    "own",
    "disown",
    "alive",
    "stop",
    "kill",
    "rss_kib",
    "peak_rss_kib",
    "tail",
    "free_port",
    "poll",
]
