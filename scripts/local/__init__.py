"""The local platform: the stack's registered graph applied to Google's emulators, run end to end.

Public API (used by ``platform local`` and by ``deploy --stack local``)::

    from scripts.local import LocalPlatform

    with LocalPlatform("prod") as lp:            # everything it started stops on exit
        status = lp.up()                          # evaluate + preflight + emulators + apply
        lp.apply(env={...}, dry_run=False)        # re-apply (idempotent): op counts
        lp.run_synthetic_batch(items=20, timeout=120)
        lp.run_job("check-stalled")               # a scheduler job, on demand
        lp.monitoring()                           # the cloud alerts' local equivalents
    LocalPlatform.attach().status() / .down()     # from another shell (state in .local/)

Failure semantics: :class:`RefusedStack` before anything is applied (invalid config, a topic
with no subscription, a failing preflight rule); :class:`ServiceStartError` when a service
does not start (its log quoted); :class:`SecretsFileError` (a :class:`PlatformError`), before
anything starts, when ``.local/secrets.yaml`` is malformed or cannot be kept private (one
line, never a value); :class:`NotRunning` when nothing runs from the state dir;
``scripts.emulators.EmulatorUnavailable`` when Java or an emulator is missing.
"""

from scripts.local._apply import ApplyAborted, ApplyResult, Op, PubSubAdmin, apply_pubsub
from scripts.local._batches import BatchClient, BatchOutcome, demo_items, demo_summary
from scripts.local._errors import NotRunning, PlatformError, RefusedStack
from scripts.local._evaluation import read_config_file
from scripts.local._monitoring import (
    AlertFlag,
    DeadLetterDepth,
    MonitoringStatus,
    PushBacklog,
    StuckBatches,
)
from scripts.local._platform import LOCAL_STACK, LocalPlatform, running_firestore
from scripts.local._scheduler import JobRun, LocalScheduler, call_job, next_fire
from scripts.local._secrets import SecretsFileError
from scripts.local._services import EntryPoint, ServiceStartError, entry_point, load_secrets
from scripts.local._state import DEFAULT_STATE_DIR
from scripts.local._status import PlatformStatus, ProcStatus
from scripts.local._topology import (
    NOT_APPLIED,
    AlertWatch,
    JobSpec,
    ServiceSpec,
    SubscriptionSpec,
    TopicSpec,
    Topology,
    TopologyError,
    dangling_topics,
    topology_from_resources,
)

__all__ = [
    "LOCAL_STACK",
    "LocalPlatform",
    "running_firestore",
    "PlatformStatus",
    "ProcStatus",
    "MonitoringStatus",
    "AlertFlag",
    "DeadLetterDepth",
    "PushBacklog",
    "StuckBatches",
    "BatchOutcome",
    "BatchClient",
    "PlatformError",
    "RefusedStack",
    "NotRunning",
    "ServiceStartError",
    "SecretsFileError",
    "ApplyAborted",
    "ApplyResult",
    "Op",
    "PubSubAdmin",
    "apply_pubsub",
    "Topology",
    "TopicSpec",
    "SubscriptionSpec",
    "ServiceSpec",
    "JobSpec",
    "AlertWatch",
    "NOT_APPLIED",
    "TopologyError",
    "topology_from_resources",
    "dangling_topics",
    "LocalScheduler",
    "JobRun",
    "call_job",
    "next_fire",
    "EntryPoint",
    "entry_point",
    "load_secrets",
    "demo_items",
    "demo_summary",
    "read_config_file",
    "DEFAULT_STATE_DIR",
]
