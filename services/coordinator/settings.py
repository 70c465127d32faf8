"""The coordinator's configuration, from its env contract (``shared/contract.py``)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from shared.batch_model import (
    DEFAULT_IDLE_WINDOW,
    DEFAULT_MAX_AGE,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_STUCK_AFTER,
    StallPolicy,
)
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
        problems: list[str] = []

        def seconds(name: str, default: timedelta) -> timedelta:
            raw = env.get(name)
            if raw is None or raw == "":
                return default
            try:
                value = float(raw)
            except ValueError:
                problems.append(f"{name}={raw!r} is not a number of seconds")
                return default
            if value <= 0:
                problems.append(f"{name}={raw!r} must be > 0")
            return timedelta(seconds=value)

        idle = seconds("STALL_IDLE_SECONDS", DEFAULT_IDLE_WINDOW)
        max_age = seconds("BATCH_MAX_AGE_SECONDS", DEFAULT_MAX_AGE)
        stuck = seconds("STUCK_AFTER_SECONDS", DEFAULT_STUCK_AFTER)
        attempts = DEFAULT_MAX_ATTEMPTS
        raw = env.get("STALL_MAX_ATTEMPTS")
        if raw:
            try:
                attempts = int(raw)
                if attempts < 1:
                    problems.append(f"STALL_MAX_ATTEMPTS={raw!r} must be >= 1")
            except ValueError:
                problems.append(f"STALL_MAX_ATTEMPTS={raw!r} is not a whole number")
        if problems:
            raise ConfigError(SERVICE, problems)
        return cls(
            project=env["GCP_PROJECT_ID"],
            request_topic=env["REQUEST_TOPIC"],
            api_key=env["COORDINATOR_API_KEY"],
            firestore_database=env.get("FIRESTORE_DATABASE") or None,
            policy=StallPolicy(
                idle_window=idle, max_attempts=attempts, max_age=max_age, stuck_after=stuck
            ),
        )
