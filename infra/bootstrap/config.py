"""The bootstrap's config, validated at once with every problem named by its key."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from infra import limits

__all__ = ["BootstrapConfig", "BootstrapConfigError", "parse_bootstrap_config", "NAMESPACE"]

NAMESPACE = "prediction-platform-bootstrap"

_BUCKET_RE = limits.BUCKET_NAME_RE
_ACCOUNT_RE = limits.SERVICE_ACCOUNT_ID_RE
_REPO_RE = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
_KMS_RE = re.compile(r"^[a-zA-Z0-9_-]{1,63}$")
_DB_RE = re.compile(r"^[a-z][a-z0-9-]{2,61}[a-z0-9]$")


class BootstrapConfigError(ValueError):
    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid bootstrap config:\n" + "\n".join(f"  {p}" for p in problems))


@dataclass(frozen=True)
class BootstrapConfig:
    project: str
    region: str
    state_bucket: str
    kms_key_ring: str
    kms_key: str
    deployer_account_id: str
    github_repository: str
    github_ref: str
    lock_database: str
    builder_account_id: str
    build_source_bucket: str


_FIELDS: dict[str, tuple[re.Pattern[str], str]] = {
    "state_bucket": (_BUCKET_RE, "3-63 chars: lowercase letters, digits, '-', '_'"),
    "kms_key_ring": (_KMS_RE, "1-63 chars: letters, digits, '-', '_'"),
    "kms_key": (_KMS_RE, "1-63 chars: letters, digits, '-', '_'"),
    "deployer_account_id": (_ACCOUNT_RE, "6-30 chars: lowercase letters, digits, '-'"),
    "github_repository": (_REPO_RE, "OWNER/NAME"),
    "github_ref": (re.compile(r"^refs/(heads|tags)/\S+$"), "refs/heads/<branch>"),
    "builder_account_id": (_ACCOUNT_RE, "6-30 chars: lowercase letters, digits, '-'"),
    "build_source_bucket": (
        _BUCKET_RE,
        "3-63 chars: lowercase letters, digits, '-', '_' (Cloud Build's own: PROJECT_cloudbuild)",
    ),
    "lock_database": (
        _DB_RE,
        "4-63 chars: lowercase letters, digits, '-' (not '(default)': the platform stack owns it)",
    ),
}


def parse_bootstrap_config(
    project: str | None, region: str | None, raw: Mapping[str, Any] | None
) -> BootstrapConfig:
    problems: list[str] = []
    if not project:
        problems.append("gcp:project: required")
    if not region:
        problems.append("gcp:region: required")
    raw = dict(raw or {})
    key = f"{NAMESPACE}:bootstrap"
    for unknown in sorted(set(raw) - set(_FIELDS)):
        problems.append(f"{key}.{unknown}: unknown key (known: {', '.join(sorted(_FIELDS))})")
    values: dict[str, str] = {}
    for name, (pattern, rule) in _FIELDS.items():
        value = raw.get(name)
        if not isinstance(value, str) or not pattern.fullmatch(value):
            problems.append(f"{key}.{name}: {value!r} is not valid ({rule})")
        else:
            values[name] = value
    if problems:
        raise BootstrapConfigError(problems)
    return BootstrapConfig(project=project, region=region, **values)  # type: ignore[arg-type]
