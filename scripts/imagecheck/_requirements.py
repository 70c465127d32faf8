"""What an image's requirements declare, and whether that is the whole, installed closure.

The requirements files a ``RUN pip install -r`` installs must be COPYed before that RUN; they
pin ``name==version`` for every distribution, the versions the project venv has (so the
isolated import is faithful), and each declared distribution's own dependencies. With
hashes, pip needs ``X[extra]==v`` and plain ``X==v`` both.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import InvalidRequirement, Requirement

from infra.build_context import ImageFile

from ._dockerfile import Run, Stage
from ._venv import Venv, norm

__all__ = [
    "Declared",
    "closure_errors",
    "declared_requirements",
    "parse_requirements",
    "requirements_files",
]


_PIP_R = re.compile(r"(?:^|\s)(?:-r\s*|--requirement(?:\s+|=))(\S+)")


def requirements_files(run: Run) -> list[str]:
    """Image paths of the requirements files a ``RUN ... pip install -r X`` installs."""
    if "pip" not in run.command or "install" not in run.command:
        return []
    return [posixpath.normpath(posixpath.join(run.workdir, m)) for m in _PIP_R.findall(run.command)]


def parse_requirements(text: str) -> tuple[dict[str, Requirement], list[str], set[str]]:
    """Requirements by normalised name (extras merged), problems (lines that are not
    ``name==version``), and the names pinned without extras on a line of their own."""
    reqs: dict[str, Requirement] = {}
    plain: set[str] = set()
    problems: list[str] = []
    logical = re.sub(r"\\\n", " ", text)
    for raw in logical.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        line = re.sub(r"\s--hash[= ]\S+", "", " " + line).strip()
        if not line or line.startswith("-"):
            continue
        try:
            req = Requirement(line)
        except InvalidRequirement as exc:
            problems.append(f"unparseable requirement {line!r}: {exc}")
            continue
        pins = [s for s in req.specifier if s.operator in ("==", "===")]
        if not pins:
            problems.append(f"{req.name} is not pinned (name==version)")
        name = norm(req.name)
        if not req.extras:
            plain.add(name)
        if name in reqs and reqs[name].extras | req.extras != req.extras:
            # "X==v" and "X[extra]==v" on separate lines: one requirement with the extras.
            req = Requirement(
                f"{req.name}[{','.join(sorted(reqs[name].extras | req.extras))}]{req.specifier}"
            )
        reqs[name] = req
    return reqs, problems, plain


@dataclass
class Declared:
    """The requirements of an image, merged over its requirements files."""

    shown: str  # the files' image paths, for messages ("/app/services/worker/requirements.txt")
    reqs: dict[str, Requirement] = field(default_factory=dict)  # by normalised name
    plain: set[str] = field(default_factory=set)  # names pinned without extras on a line
    hashed: bool = False  # installed with hashes (pip --require-hashes)


def declared_requirements(
    stage: Stage, landed: Mapping[str, ImageFile], context: Path, rel_df: str
) -> tuple[Declared | None, list[str]]:
    """What the stage's ``pip install -r`` RUNs install, and the problems found on the way;
    ``None`` when no RUN installs requirements."""
    req_files = [(path, run) for run in stage.runs for path in requirements_files(run)]
    if not req_files:
        return None, [f"{rel_df}: no 'RUN pip install -r <requirements>' installs the dependencies"]
    declared = Declared(shown=", ".join(p for p, _ in req_files))
    errors: list[str] = []
    for path, run in req_files:
        f = landed.get(path)
        if f is None or f.line > run.line:
            errors.append(
                f"{rel_df}:{run.line}: installs {path}, which no COPY before that line puts in "
                "the image"
            )
            continue
        text = (context / f.context_path).read_text()
        declared.hashed = declared.hashed or "--hash" in text or "--require-hashes" in run.command
        reqs, problems, plain = parse_requirements(text)
        errors.extend(f"{f.context_path}: {p}" for p in problems)
        declared.reqs.update(reqs)
        declared.plain |= plain
    return declared, errors


def closure_errors(declared: Declared, venv: Venv) -> list[str]:
    """The declared requirements against the venv they will be imported from."""
    errors: list[str] = []
    marker_env = default_environment()
    for name, req in sorted(declared.reqs.items()):
        dist = venv.dists.get(name)
        if dist is None:
            errors.append(
                f"{declared.shown}: {req.name} is not installed in {venv.site} (run `uv sync`)"
            )
            continue
        pinned = next((s.version for s in req.specifier if s.operator in ("==", "===")), None)
        if pinned and pinned != dist.version:
            errors.append(
                f"{declared.shown}: pins {req.name}=={pinned} but the venv has {dist.version}: "
                "regenerate the requirements from uv.lock (see requirements.in)"
            )
        for raw in dist.requires or []:
            dep = Requirement(raw)
            extras = req.extras or {""}
            if dep.marker and not any(
                dep.marker.evaluate({**marker_env, "extra": e}) for e in extras
            ):
                continue
            pinned_dep = declared.reqs.get(norm(dep.name))
            if pinned_dep is None:
                errors.append(
                    f"{declared.shown}: {req.name} requires {dep.name}, which is not pinned there "
                    "(pin the whole closure)"
                )
            elif declared.hashed and not set(dep.extras) <= set(pinned_dep.extras):
                # pip --require-hashes refuses "X[extra]" wanted by a dependency unless the
                # file pins it with that extra (found by the real build: google-api-core[grpc]).
                wanted = f"{dep.name}[{','.join(sorted(dep.extras))}]"
                errors.append(
                    f"{declared.shown}: {req.name} requires {wanted}; with hashes pip installs it "
                    f"only if pinned with its extras ({wanted}==...; uv pip compile "
                    "--no-strip-extras)"
                )
    if declared.hashed:
        for name, req in sorted(declared.reqs.items()):
            if req.extras and name not in declared.plain:
                # pip --require-hashes also wants the plain "X==v" next to "X[extra]==v".
                errors.append(
                    f"{declared.shown}: {req.name}[{','.join(sorted(req.extras))}] is pinned but "
                    f"plain {req.name} is not; pip --require-hashes needs both "
                    "(images/pin_requirements.py writes both)"
                )
    return errors
