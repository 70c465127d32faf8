#!/usr/bin/env python3
"""A stand-in ``pulumi`` CLI for the Automation API (this machine has no Pulumi CLI).

It records every invocation (argv and the deploy variables it was given) as a JSON line in
``$FAKE_PULUMI_LOG`` and answers the few commands the Automation API runs around ``up`` and
``preview``: ``version``, ``stack select``, ``stack output``, ``stack history``; for ``preview``
and ``up`` it writes the engine events (one planned create, then the summary) to the
``--event-log`` file, as the real CLI does. ``$FAKE_PULUMI_OUTPUTS`` holds the stack outputs.

``$FAKE_PULUMI_MODE`` makes it fail as Pulumi documents (stderr texts the Automation API
matches, exit codes from https://www.pulumi.com/docs/iac/cli/exit-codes/): ``not-found``
(``stack select``: "no stack named ... found", exit 2), ``locked`` (``up``: the DIY backend's
"the stack is currently locked by", exit 1), ``fail`` (``up``: a resource error, exit 4),
``changes`` (``preview --expect-no-changes`` with a change proposed, exit 1), ``hang``
(``up`` waits for SIGINT, then cancels, exit 1; with ``$FAKE_PULUMI_IGNORE_SIGINT`` it
ignores SIGINT and must be killed).
"""

import json
import os
import signal
import sys
import time

args = sys.argv[1:]
with open(os.environ["FAKE_PULUMI_LOG"], "a") as log:
    seen = {k: v for k, v in os.environ.items() if k.startswith("PLATFORM_")}
    log.write(json.dumps({"args": args, "env": seen}) + "\n")
words = [a for a in args if not a.startswith("--")]
mode = os.environ.get("FAKE_PULUMI_MODE", "")


def fail(message: str, code: int) -> None:
    sys.stderr.write(message + "\n")
    sys.exit(code)


if words[:1] == ["version"]:
    print("v3.150.0")
elif words[:2] == ["stack", "select"] and mode == "not-found":
    fail(f"error: no stack named '{args[args.index('--stack') + 1]}' found", 2)
elif words[:2] == ["stack", "output"]:
    print(os.environ.get("FAKE_PULUMI_OUTPUTS", "{}"))
elif words[:2] == ["stack", "history"]:
    update = {
        "version": 1,
        "kind": "update",
        "startTime": "2026-12-01T10:00:00.000Z",
        "endTime": "2026-12-01T10:01:00.000Z",
        "message": "",
        "environment": {},
        "config": {},
        "result": "succeeded",
        "resourceChanges": {"create": 1, "same": 3},
    }
    print(json.dumps([update]))
elif words[:1] in (["preview"], ["up"]):
    if words[0] == "up" and mode == "locked":
        fail(
            "error: the stack is currently locked by 1 lock(s). Either wait for the other "
            "process(es) to end or delete the lock file with `pulumi cancel`.",
            1,
        )
    event_log = args[args.index("--event-log") + 1]
    urn = "urn:pulumi:prod::prediction-platform::gcp:pubsub/topic:Topic::t"
    events = [
        {
            "sequence": 1,
            "timestamp": 0,
            "resourcePreEvent": {
                "metadata": {
                    "op": "create",
                    "urn": urn,
                    "type": "gcp:pubsub/topic:Topic",
                    "provider": "",
                    "diffs": [],
                }
            },
        },
        {
            "sequence": 2,
            "timestamp": 0,
            "summaryEvent": {
                "maybeCorrupt": False,
                "durationSeconds": 1,
                "resourceChanges": {"create": 1, "same": 3},
                "PolicyPacks": {},
            },
        },
        {"sequence": 3, "timestamp": 0, "cancelEvent": {}},
    ]
    if words[0] == "up" and mode == "hang":
        with open(event_log, "a") as f:
            f.write(json.dumps(events[0]) + "\n")
        print("Updating (fake)", flush=True)
        if os.environ.get("FAKE_PULUMI_IGNORE_SIGINT"):
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            while True:
                time.sleep(0.05)
        except KeyboardInterrupt:
            with open(os.environ["FAKE_PULUMI_LOG"], "a") as log:
                log.write(json.dumps({"args": ["<SIGINT>"], "env": {}}) + "\n")
            fail("error: update canceled", 1)
    with open(event_log, "a") as f:
        for event in events:
            f.write(json.dumps(event) + "\n")
    print("Previewing update (fake)" if words[0] == "preview" else "Updating (fake)")
    if words[0] == "up" and mode == "fail":
        fail(
            "error: update failed: googleapi: Error 403: Permission 'run.services.create' denied", 4
        )
    if words[0] == "preview" and mode == "changes" and "--expect-no-changes" in args:
        fail("error: no changes were expected but changes were proposed", 1)
