"""Cloud Run's rules for one service: its derived names, cpu and memory, env names, sizes and
placeholders, its references to secrets and topics, and the contract of the service's code.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from infra import limits
from infra.config._formats import placeholder_problems, substitute
from infra.config._issues import ConfigIssue
from infra.config._parts import Parts, known
from infra.config._services import ServiceConfig
from infra.naming import Kind, physical_name

__all__ = ["cpu_memory_problems", "service_issues"]

# The platform's own env-name rule (stricter than Cloud Run's): a POSIX-portable name, so the
# same variable works in the services' shells, the local platform and the test harness.
# https://pubs.opengroup.org/onlinepubs/9699919799/basedefs/V1_chap08.html
ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def cpu_memory_problems(svc: ServiceConfig) -> list[str]:
    """What Cloud Run would reject in this cpu/memory/concurrency/billing combination.

    https://cloud.google.com/run/docs/configuring/services/cpu and .../memory-limits
    """
    cpu, mem = svc.cpu_vcpus, svc.memory_mib
    errors = []
    if cpu < 1:
        for below, max_mib in limits.RUN_FRACTIONAL_MEMORY_MAX_MIB:
            if cpu < below and mem > max_mib:
                errors.append(
                    f"memory {svc.memory} needs at least {below:g} vCPU (cpu is {svc.cpu})"
                )
                break
        if svc.concurrency != 1:
            errors.append(f"cpu below 1 requires concurrency 1 (got {svc.concurrency})")
        if not svc.cpu_idle:
            errors.append("cpu below 1 requires cpu_idle: true (request-based billing)")
        return errors
    low, high = limits.RUN_CPU_MEMORY_MIB[int(cpu)]
    if not low <= mem <= high:
        errors.append(
            f"memory {svc.memory} is outside {low}Mi-{high // limits.MIB_PER_GIB}Gi, "
            f"the range Cloud Run accepts for {int(cpu)} vCPU"
        )
    return errors


def _env_name_problems(var: str) -> list[str]:
    # Cloud Run's rules first (reserved, X_GOOGLE_, "="), then the platform's stricter shape.
    if var in limits.RUN_RESERVED_ENV:
        return [
            f"'{var}' is set by Cloud Run itself (container runtime contract): use another name"
        ]
    if var.startswith(limits.RUN_RESERVED_ENV_PREFIX):
        return [f"names starting with {limits.RUN_RESERVED_ENV_PREFIX} are reserved by Cloud Run"]
    if not ENV_NAME_RE.fullmatch(var):
        return ["not a valid env var name (letters, digits and '_', not starting with a digit)"]
    if len(var) > limits.RUN_ENV_NAME_MAX:
        return [f"longer than Cloud Run's {limits.RUN_ENV_NAME_MAX} characters"]
    return []


def service_issues(
    parts: Parts, prefix: str, name: str, svc: ServiceConfig | None
) -> Iterator[ConfigIssue]:
    from shared.contract import CONTRACTS

    path = f"{prefix}.services.{name}"
    if not limits.RUN_SERVICE_NAME_RE.fullmatch(physical_name(Kind.SERVICE, name, parts.stack)):
        yield ConfigIssue(
            f"{path} (key)",
            f"'{name}' is not a Cloud Run service name: lowercase letters, digits and "
            "hyphens, starting with a letter, at most 49 characters",
        )
    for kind in (Kind.RUNTIME_ACCOUNT, Kind.PUSH_ACCOUNT, Kind.SCHEDULER_ACCOUNT):
        account = physical_name(kind, name, parts.stack)
        if not limits.SERVICE_ACCOUNT_ID_RE.fullmatch(account):
            yield ConfigIssue(
                f"{path} (key)",
                f"derived service account id '{account}' is not valid (6-30 lowercase "
                "letters, digits, hyphens): shorten the service name",
            )
            break
    if svc is None:
        return
    for problem in cpu_memory_problems(svc):
        yield ConfigIssue(f"{path}.cpu", problem)

    sections = (("env", svc.env), ("secret_env", svc.secret_env), ("publishes", svc.publishes))
    seen: dict[str, str] = {}
    for section, values in sections:
        for var in values:
            for problem in _env_name_problems(var):
                yield ConfigIssue(f"{path}.{section}.{var}", problem)
            if var in seen:
                yield ConfigIssue(
                    f"{path}.{section}.{var}", f"also set in {path}.{seen[var]}: set it once"
                )
            seen.setdefault(var, section)
    count = len(seen)
    if count > limits.RUN_ENV_MAX_COUNT:
        yield ConfigIssue(
            f"{path}.env",
            f"{count} variables: Cloud Run allows at most {limits.RUN_ENV_MAX_COUNT} per container",
        )

    total = 0
    for var, value in svc.env.items():
        for problem in placeholder_problems(value):
            yield ConfigIssue(f"{path}.env.{var}", problem)
        final = substitute(
            value, project=parts.project or "", region=parts.region or "", stack=parts.stack
        )
        size = len(final.encode())
        total += len(var.encode()) + size
        if size > limits.RUN_ENV_VALUE_MAX_BYTES:
            yield ConfigIssue(
                f"{path}.env.{var}",
                f"value is {size} bytes: Cloud Run allows {limits.RUN_ENV_VALUE_MAX_BYTES} per "
                "variable (put large data in a secret or a file in the image)",
            )
    for var, topic in svc.publishes.items():
        total += len(var.encode()) + len(physical_name(Kind.TOPIC, topic, parts.stack).encode())
    total += sum(len(var.encode()) for var in svc.secret_env)
    if total > limits.RUN_ENV_TOTAL_MAX_BYTES:
        yield ConfigIssue(
            f"{path}.env",
            f"names and values total {total} bytes, above the {limits.RUN_ENV_TOTAL_MAX_BYTES} "
            "bytes Google documents for Cloud Run environment variables",
        )

    for var, secret in svc.secret_env.items():
        if secret not in parts.secrets:
            yield ConfigIssue(
                f"{path}.secret_env.{var}",
                f"unknown secret '{secret}' (declared: {known(parts.secrets)}; declare it "
                f"under platform.secrets)",
            )
    for var, topic in svc.publishes.items():
        if topic not in parts.topics:
            yield ConfigIssue(
                f"{path}.publishes.{var}",
                f"unknown topic '{topic}' (known: {known(parts.topics)})",
            )

    contract = CONTRACTS.get(name)
    if contract is None:
        return
    if svc.uses_firestore != contract.uses_firestore:
        yield ConfigIssue(
            f"{path}.uses_firestore",
            f"is {str(svc.uses_firestore).lower()}, but the service's code "
            f"{'uses' if contract.uses_firestore else 'does not use'} Firestore "
            f"(shared/contract.py): set it to {str(contract.uses_firestore).lower()}"
            + ("" if contract.uses_firestore else " (no unused datastore.user grant)"),
        )
    plain = set(svc.env) | set(svc.publishes)
    missing = [v for v in contract.required if v not in plain and v not in svc.secret_env]
    if missing:
        yield ConfigIssue(
            f"{path}.env",
            f"missing {', '.join(missing)}, required by the service's code "
            "(shared/contract.py): set it in env, or publishes for a topic",
        )
    for var in contract.secrets:
        if var in svc.env:
            yield ConfigIssue(
                f"{path}.env.{var}",
                "must be a secret reference (secret_env), never a literal value",
            )
        elif var not in svc.secret_env:
            yield ConfigIssue(
                f"{path}.secret_env",
                f"missing {var}, a secret required by the service's code (shared/contract.py)",
            )
