"""The local platform's two emulators: started detached, recorded in the state, clients on them.

The platform owns Google's Firestore and Pub/Sub emulators (started by
:mod:`scripts.emulators`) from their first start: detached, so ``platform local up`` can
leave them running for another shell, and stopped by ``down`` (or at exit unless the platform
is detached). Their hosts and processes live in the state's ``emulators`` entry.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import Any

from scripts import emulators, processes
from scripts.local._errors import NotRunning

__all__ = ["EMULATOR_ENV_VARS", "start_missing", "emulator_env", "running_firestore"]

#: What each emulator is called in the state, and the variable its clients read.
EMULATOR_ENV_VARS = {"firestore": "FIRESTORE_EMULATOR_HOST", "pubsub": "PUBSUB_EMULATOR_HOST"}
_STARTERS = {"firestore": emulators.start_firestore, "pubsub": emulators.start_pubsub}


def _alive(entry: Any) -> bool:
    return bool(entry) and processes.alive(processes.ProcRecord.from_dict(entry["proc"]))


def start_missing(
    current: MutableMapping[str, Any], project: str, *, say: Callable[[str], None]
) -> bool:
    """Start each emulator not alive in ``current`` (the state's ``emulators`` entry, updated
    in place); whether any was started.

    Raises ``scripts.emulators.EmulatorUnavailable`` when Java or an emulator is missing.
    """
    changed = False
    for kind, start in _STARTERS.items():
        if _alive(current.get(kind)):
            continue
        say(f"starting the {kind} emulator")
        # Detached: the local platform owns it from here; its atexit hook (or `down`)
        # stops it, and `detach()` can leave it running for another shell.
        emu = start(project, detached=True)
        processes.own(emu.record)
        current[kind] = {"host": emu.host, "proc": emu.record.to_dict()}
        changed = True
    return changed


def emulator_env(current: MutableMapping[str, Any]) -> dict[str, str]:
    """``FIRESTORE_EMULATOR_HOST`` / ``PUBSUB_EMULATOR_HOST`` for the services' environment."""
    return {var: current[kind]["host"] for kind, var in EMULATOR_ENV_VARS.items()}


def running_firestore(
    current: MutableMapping[str, Any], project: str, *, database: str | None, state_dir: Path
) -> Any:
    """A client on the Firestore emulator in ``current`` if it runs; never starts one.

    Raises :class:`NotRunning` when it is not up (`platform local up` starts it).
    """
    entry = current.get("firestore")
    if not _alive(entry):
        raise NotRunning(
            f"the local platform's Firestore emulator is not running ({state_dir}): "
            "run `platform local up`"
        )
    return emulators.firestore_client(entry["host"], project, database=database)
