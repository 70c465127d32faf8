#!/usr/bin/env python3
"""A stand-in ``pulumi`` CLI for the Automation API (this machine has no Pulumi CLI).

It records every invocation (argv and the deploy variables it was given) as a JSON line in
``$FAKE_PULUMI_LOG`` and answers the few commands the Automation API runs around ``up`` and
``preview``: ``version``, ``stack select``, ``stack output``, ``stack history``; for ``preview``
and ``up`` it writes the engine events (one planned create, then the summary) to the
``--event-log`` file, as the real CLI does. ``$FAKE_PULUMI_OUTPUTS`` holds the stack outputs.
"""

import json
import os
import sys

args = sys.argv[1:]
with open(os.environ["FAKE_PULUMI_LOG"], "a") as log:
    seen = {k: v for k, v in os.environ.items() if k.startswith("PLATFORM_")}
    log.write(json.dumps({"args": args, "env": seen}) + "\n")
words = [a for a in args if not a.startswith("--")]
if words[:1] == ["version"]:
    print("v3.150.0")
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
    with open(event_log, "a") as f:
        for event in events:
            f.write(json.dumps(event) + "\n")
    print("Previewing update (fake)" if words[0] == "preview" else "Updating (fake)")
