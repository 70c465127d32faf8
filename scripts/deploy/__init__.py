"""The deploy pipeline, drift, deployment history and rollback.

Thin adapters over the official clients, each behind a small protocol the orchestration is
tested against: :class:`PulumiEngine` (Automation API), :class:`ImageBuilder` (Cloud Build +
Artifact Registry), :class:`RunInspector` (Cloud Run) and :class:`ToolingCheck` (``pulumi``
CLI and GCP credentials). History lives in Firestore (collection ``deployments``), beside the
deploy lock.

Failure semantics: library functions raise :class:`DeployError` subclasses whose messages say
what to do; :func:`run_deploy` never raises for an expected failure and reports it in
:attr:`DeployOutcome.exit_code` (the project's exit-code table) and ``error``.
"""

from ._announce import deploy_notifier
from ._clients import (
    DEFAULT_LOCK_DATABASE,
    LOCAL_STACK,
    LOCK_DATABASE_ENV,
    cloud_rollout_adapters,
    firestore_for,
    local_platform,
    local_releases,
)
from ._cloudbuild import (
    CloudBuildAdapter,
    ImageBuilder,
    ImageOutcome,
    ImageTarget,
    build_steps,
    ensure_images,
    entry_module,
)
from ._cloudcheck import CloudSyntheticCheck
from ._cloudrun import (
    COMMIT_LABEL,
    LOCK_TOKEN_LABEL,
    CloudRunAdapter,
    RunInspector,
    ServiceCheck,
    ServiceRef,
    ServiceState,
    verify_services,
)
from ._drift import DriftReport, compute_drift, context_paths
from ._errors import (
    DeployError,
    DirtyTree,
    Interrupted,
    LeaseLost,
    MissingTool,
    PreflightFailed,
    RollbackRefused,
    ToolingMissing,
    VerificationFailed,
)
from ._git import Commit, GitRepo
from ._history import COLLECTION, Deployment, DeploymentHistory, Result, new_deployment_id
from ._images import default_image_tags
from ._lockport import DeployLockLocker
from ._pipeline import run_deploy
from ._preflight import PlanPreflight, evaluate_plan, plan_stack_info
from ._pulumi import (
    ENV_COMMIT,
    ENV_IMAGE_OVERRIDES,
    ENV_LOCK_TOKEN,
    POLICY_PACK_DIR,
    AutomationPulumi,
    EngineResult,
    PulumiEngine,
    ResourceChange,
    deploy_engine,
)
from ._registry import ArtifactRegistryDigests
from ._releases import release_tree
from ._rollback import PREVIOUS, select_rollback
from ._secrets import SecretManagerSecrets, SecretUnavailable
from ._stackadapters import StackAdapters, existing_creates, records_client, stack_adapters
from ._stackinfo import StackInfo, StackService, stack_info
from ._steps import (
    BUILDERS,
    STEPS,
    DeployOutcome,
    DeployRequest,
    Locker,
    Preflight,
    PreflightResult,
    Reporter,
)
from ._targets import CloudTarget, LocalPlatform, LocalTarget, Target
from ._tooling import SystemTooling, ToolingCheck, check_tooling, missing_pulumi

__all__ = [
    "plan_stack_info",
    "evaluate_plan",
    "PlanPreflight",
    "default_image_tags",
    "local_releases",
    "local_platform",
    "firestore_for",
    "cloud_rollout_adapters",
    "LOCK_DATABASE_ENV",
    "LOCAL_STACK",
    "DEFAULT_LOCK_DATABASE",
    "BUILDERS",
    "COLLECTION",
    "COMMIT_LABEL",
    "ENV_COMMIT",
    "ENV_IMAGE_OVERRIDES",
    "ENV_LOCK_TOKEN",
    "LOCK_TOKEN_LABEL",
    "POLICY_PACK_DIR",
    "PREVIOUS",
    "STEPS",
    "ArtifactRegistryDigests",
    "AutomationPulumi",
    "CloudBuildAdapter",
    "CloudRunAdapter",
    "CloudSyntheticCheck",
    "CloudTarget",
    "Commit",
    "DeployError",
    "DeployLockLocker",
    "DeployOutcome",
    "DeployRequest",
    "Deployment",
    "DeploymentHistory",
    "DirtyTree",
    "DriftReport",
    "EngineResult",
    "GitRepo",
    "ImageBuilder",
    "ImageOutcome",
    "ImageTarget",
    "Interrupted",
    "LeaseLost",
    "LocalPlatform",
    "LocalTarget",
    "Locker",
    "MissingTool",
    "Preflight",
    "PreflightFailed",
    "PreflightResult",
    "PulumiEngine",
    "Reporter",
    "ResourceChange",
    "Result",
    "RollbackRefused",
    "RunInspector",
    "SecretManagerSecrets",
    "SecretUnavailable",
    "ServiceCheck",
    "ServiceRef",
    "ServiceState",
    "StackAdapters",
    "StackInfo",
    "StackService",
    "SystemTooling",
    "Target",
    "ToolingCheck",
    "ToolingMissing",
    "VerificationFailed",
    "build_steps",
    "check_tooling",
    "compute_drift",
    "context_paths",
    "deploy_engine",
    "deploy_notifier",
    "ensure_images",
    "existing_creates",
    "entry_module",
    "missing_pulumi",
    "new_deployment_id",
    "records_client",
    "release_tree",
    "run_deploy",
    "select_rollback",
    "stack_adapters",
    "stack_info",
    "verify_services",
]
