"""Parsers for the config's formatted strings, each as strict as the Google service reading it:
CPU and memory (Cloud Run), cron and time zone (Cloud Scheduler), env values' placeholders.

Each raises ``ValueError`` with a message saying what is accepted.
"""

from __future__ import annotations

import functools
import re
import zoneinfo
from importlib import resources

from infra import limits

__all__ = [
    "PLACEHOLDERS",
    "parse_cpu",
    "cpu_text",
    "parse_memory_mib",
    "check_cron",
    "check_time_zone",
    "placeholder_problems",
    "substitute",
]

_CPU_RE = re.compile(r"(?P<milli>\d+)m|(?P<vcpu>\d+(?:\.\d+)?)")


def cpu_text(v: object) -> object:
    """``cpu: 2`` in YAML is as natural as ``cpu: "2"``; Cloud Run takes the string."""
    if isinstance(v, bool):
        return v
    if isinstance(v, int | float):
        return str(int(v)) if float(v).is_integer() and v >= 1 else str(v)
    return v


def parse_cpu(cpu: str) -> float:
    """vCPUs of ``cpu`` (``"2"``, ``"0.5"``, ``"500m"``), held to Cloud Run's CPU page."""
    # A strict shape, not float(): float() also takes "inf", "nan" and "1e3", which Cloud Run
    # rejects and which broke the range checks.
    m = _CPU_RE.fullmatch(cpu) if isinstance(cpu, str) else None
    if m is None:
        raise ValueError(f"cpu '{cpu}' is not a number of vCPUs like '1', '2' or '500m'")
    value = int(m["milli"]) / 1000 if m["milli"] else float(m["vcpu"])
    allowed = ", ".join(map(str, limits.RUN_INTEGER_CPUS))
    if value >= 1:
        if not value.is_integer() or int(value) not in limits.RUN_INTEGER_CPUS:
            raise ValueError(f"cpu {cpu}: values of 1 or more must be one of {allowed}")
        return value
    if value < limits.RUN_FRACTIONAL_CPU_MIN:
        raise ValueError(f"cpu {cpu} is below Cloud Run's minimum of 0.08 vCPU")
    if m["vcpu"] and len(m["vcpu"].partition(".")[2]) > 3:
        raise ValueError(f"cpu {cpu}: below 1 vCPU Cloud Run takes steps of 0.001")
    return value


_MEMORY_RE = re.compile(r"(\d+)(Mi|Gi|M|G)")


def parse_memory_mib(memory: str) -> int:
    """MiB of ``memory`` (``512Mi``, ``2Gi``, ``1G``), within Cloud Run's 128 MiB - 32 GiB."""
    m = _MEMORY_RE.fullmatch(memory) if isinstance(memory, str) else None
    if not m:
        raise ValueError(f"memory '{memory}' is not a size like 512Mi or 2Gi")
    n, unit = int(m.group(1)), m.group(2)
    mib = {
        "Gi": n * limits.MIB_PER_GIB,
        "G": n * 1000**3 // 1024**2,
        "M": n * 1000**2 // 1024**2,
        "Mi": n,
    }[unit]
    low, high = limits.RUN_MEMORY_MIB
    if not low <= mib <= high:
        raise ValueError(f"memory {memory} is outside the 128Mi-32Gi Cloud Run accepts")
    return mib


# --- Cloud Scheduler -----------------------------------------------------------------------

_CRON_ITEM_RE = re.compile(
    r"(?P<base>\*|(?P<lo>[0-9A-Z]+)(?:-(?P<hi>[0-9A-Z]+))?)(?:/(?P<step>\d+))?"
)
_CRON_EXAMPLE = "e.g. '*/15 * * * *' or '0 9 * * MON-FRI'"


def _cron_value(text: str, name: str, low: int, high: int, names: dict[str, int]) -> int:
    value = names.get(text) if not text.isdigit() else int(text)
    if value is None:
        known = f" or {min(names, key=names.get)}-{max(names, key=names.get)}" if names else ""
        raise ValueError(f"{name} '{text}' is not a number{known}")
    if not low <= value <= high:
        raise ValueError(f"{name} {value} is outside {low}-{high}")
    return value


def check_cron(schedule: str) -> str:
    """``schedule`` if it is the unix-cron Cloud Scheduler documents, else ``ValueError``."""
    fields = schedule.split(" ")
    if len(fields) != 5 or not all(fields):
        raise ValueError(
            f"'{schedule}' is not a 5-field cron expression separated by single spaces "
            f"({_CRON_EXAMPLE})"
        )
    for text, (name, low, high, names) in zip(fields, limits.CRON_FIELDS, strict=True):
        for item in text.split(","):
            m = _CRON_ITEM_RE.fullmatch(item)
            if m is None:
                raise ValueError(
                    f"'{schedule}': {name} '{item}' is not '*', a number, a range 'a-b' or "
                    f"a step '*/n' or 'a-b/n' (Cloud Scheduler's cron; {_CRON_EXAMPLE})"
                )
            try:
                if m["lo"] is not None:
                    lo = _cron_value(m["lo"], name, low, high, names)
                    if m["hi"] is not None:
                        hi = _cron_value(m["hi"], name, low, high, names)
                        if hi < lo:
                            raise ValueError(f"{name} range {item} runs backwards")
                    elif m["step"] is not None:
                        raise ValueError(f"{name} step '{item}' needs '*' or a range before '/'")
                if m["step"] is not None and int(m["step"]) == 0:
                    raise ValueError(f"{name} step '{item}' is 0")
            except ValueError as exc:
                raise ValueError(f"'{schedule}': {exc} ({_CRON_EXAMPLE})") from None
    return schedule


@functools.cache
def _tz_names() -> frozenset[str]:
    # The tz database's names as the tzdata package ships them (one list, on every machine);
    # this machine's zoneinfo also opens paths such as "posix/Europe/Paris" that are no tz
    # database name. "Factory" is a placeholder zone, not a place.
    try:
        text = resources.files("tzdata").joinpath("zones").read_text()
        names = {line.strip() for line in text.splitlines() if line.strip()}
    except (ModuleNotFoundError, FileNotFoundError):  # pragma: no cover - tzdata is installed
        names = set(zoneinfo.available_timezones())
    return frozenset(names - {"Factory", "localtime"})


def check_time_zone(tz: str) -> str:
    """``tz`` if it is a tz database name (Cloud Scheduler's jobs.timeZone), else ValueError."""
    if tz not in _tz_names():
        raise ValueError(
            f"'{tz}' is not an IANA time zone (a tz database name, which Cloud Scheduler "
            "requires: e.g. 'America/Los_Angeles', 'Etc/UTC')"
        )
    return tz


# --- Env values ----------------------------------------------------------------------------

#: What an env value may say instead of writing the stack's values twice.
PLACEHOLDERS = ("project", "region", "stack")
_PLACEHOLDER_RE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def placeholder_problems(value: str) -> list[str]:
    """Unknown ``{name}`` placeholders in an env value (a typo would be deployed literally)."""
    known = ", ".join(f"{{{p}}}" for p in PLACEHOLDERS)
    return [
        f"unknown placeholder '{{{name}}}' (known: {known})"
        for name in _PLACEHOLDER_RE.findall(value)
        if name not in PLACEHOLDERS
    ]


def substitute(value: str, *, project: str, region: str, stack: str) -> str:
    """``value`` with its placeholders replaced."""
    values = {"project": project, "region": region, "stack": stack}
    return _PLACEHOLDER_RE.sub(lambda m: values.get(m[1], m[0]), value)
