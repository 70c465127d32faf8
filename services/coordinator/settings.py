"""The coordinator's configuration, from its env contract (``shared/contract.py``)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from shared.batch_model import StallPolicy, stall_policy_from_env
from shared.startup import ConfigError, require_env

SERVICE = "prediction-coordinator"


@dataclass(frozen=True)
class Settings:
    project: str
    request_topic: str
    api_key: str
    firestore_database: str | None
    policy: StallPolicy

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Raises MissingEnvironment (all missing names) or ConfigError (all bad values)."""
        env = require_env(SERVICE, os.environ if environ is None else environ)
        policy, problems = stall_policy_from_env(env)
        if problems:
            raise ConfigError(SERVICE, problems)
        return cls(
            project=env["GCP_PROJECT_ID"],
            request_topic=env["REQUEST_TOPIC"],
            api_key=env["COORDINATOR_API_KEY"],
            firestore_database=env.get("FIRESTORE_DATABASE") or None,
            policy=policy,
        )
