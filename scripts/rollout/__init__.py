"""Progressive traffic for Cloud Run: a new revision earns its traffic step by step.

The sequence for one service (the deploy pipeline runs it after ``pulumi up``):

1. the new revision is tagged ``candidate`` and serves 0% (:meth:`CloudRunTraffic.split`);
2. the post-deploy check runs against the tag's URL (the pipeline's business);
3. traffic moves in the policy's steps (say 10%, 50%, 100%), each held while the candidate's
   5xx share (Cloud Monitoring's ``run.googleapis.com/request_count`` by
   ``response_code_class``) stays under the threshold;
4. on a breach, traffic returns to the previous revision at once and the result carries the
   evidence (:class:`RolloutResult`).

Who owns the traffic block: the Pulumi program creates each service with all traffic on its
latest revision and then ignores changes to ``traffics`` (``ignore_changes``), so ``pulumi up``
only ever creates revisions; this module is the only writer of the split afterwards, and it
always ends with traffic pinned to a revision by name, so the next ``up``'s new revision
starts at 0% until its own rollout moves it.
"""

from ._check import CheckPolicy, CheckResult, judge_check
from ._controller import RolloutResult, StepResult, progressive_rollout
from ._metrics import MonitoringErrorRate, RequestSample
from ._policy import RolloutPolicy
from ._synthetic import run_synthetic_check, synthetic_batch_id, synthetic_items
from ._traffic import CANDIDATE_TAG, CloudRunTraffic, TrafficState

__all__ = [
    "CANDIDATE_TAG",
    "CheckPolicy",
    "CheckResult",
    "judge_check",
    "CloudRunTraffic",
    "MonitoringErrorRate",
    "RequestSample",
    "RolloutPolicy",
    "RolloutResult",
    "StepResult",
    "TrafficState",
    "progressive_rollout",
    "run_synthetic_check",
    "synthetic_batch_id",
    "synthetic_items",
]
