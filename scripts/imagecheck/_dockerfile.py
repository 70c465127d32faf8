"""What a Dockerfile's final stage produces, and the rules an image of this platform keeps.

:func:`stage_facts` reads the last stage (base, WORKDIR, ENV, USER, CMD/ENTRYPOINT, RUNs) as
the build would apply them; :func:`parse_entry` finds the ASGI server and ``module:attr`` app
CMD starts; :func:`dockerfile_errors` holds the rules: the base pinned by digest, a non-root
USER, every copied file readable by that user.
"""

from __future__ import annotations

import json
import posixpath
import re
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from infra.build_context import BuildContext, ImageFile

__all__ = [
    "AppEntry",
    "Run",
    "SERVERS",
    "Stage",
    "dockerfile_entry",
    "dockerfile_errors",
    "image_cmd",
    "parse_entry",
    "stage_facts",
]

#: Servers CMD may name, and the module ``python -m`` would run for each.
SERVERS = {"uvicorn": "uvicorn", "gunicorn": "gunicorn", "hypercorn": "hypercorn"}
_APP_SPEC = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
_ROOT_USERS = {"", "root", "0", "root:root", "0:0", "root:0", "0:root"}


@dataclass(frozen=True)
class AppEntry:
    """What CMD starts: the server, the ``module:attr`` app, and the app dir it imports from."""

    server: str  # "uvicorn"
    module: str  # "services.coordinator.main"
    attr: str  # "app"
    app_dir: str  # absolute image path put first on sys.path (uvicorn --app-dir, default cwd)
    argv: tuple[str, ...]  # CMD as exec'd (ENTRYPOINT + CMD)
    options: tuple[str, ...] = ()  # the server's arguments other than the app


@dataclass
class Run:
    line: int
    command: str
    workdir: str


@dataclass
class Stage:
    base: str = ""
    base_resolved: str = ""
    workdir: str = "/"
    env: dict[str, str] = field(default_factory=dict)
    user: str = ""
    cmd: list[str] | None = None
    entrypoint: list[str] | None = None
    runs: list[Run] = field(default_factory=list)


_VAR = re.compile(r"\$(?:\{(\w+)(?::-([^}]*))?\}|(\w+))")


def _expand(value: str, env: dict[str, str]) -> str:
    def sub(m: re.Match) -> str:
        name = m.group(1) or m.group(3)
        default = m.group(2)
        got = env.get(name)
        return got if got else (default or "")

    return _VAR.sub(sub, value)


def _exec_form(value: str) -> list[str]:
    value = value.strip()
    if value.startswith("["):
        try:
            parsed = json.loads(value)
            if isinstance(parsed, list) and all(isinstance(x, str) for x in parsed):
                return parsed
        except json.JSONDecodeError:
            pass
    return ["/bin/sh", "-c", value]


def stage_facts(bc: BuildContext) -> Stage:
    stage = Stage()
    structure = bc.parser.structure
    args: dict[str, str] = {}
    last_from = max(
        (i for i, ins in enumerate(structure) if ins["instruction"] == "FROM"), default=0
    )
    for ins in structure[:last_from]:
        if ins["instruction"] == "ARG" and "=" in ins["value"]:
            k, v = ins["value"].strip().split("=", 1)
            args[k.strip()] = v.strip().strip('"')
    for ins in structure[last_from:]:
        kind, value, line = ins["instruction"], ins["value"], ins["startline"] + 1
        if kind == "FROM":
            stage.base = value.split()[0] if value.split() else ""
            stage.base_resolved = _expand(stage.base, args)
        elif kind == "WORKDIR":
            stage.workdir = posixpath.normpath(
                posixpath.join(stage.workdir, _expand(value.strip(), stage.env))
            )
        elif kind == "ENV":
            words = shlex.split(value)
            if words and "=" not in words[0]:
                stage.env[words[0]] = _expand(" ".join(words[1:]), stage.env)
            else:
                for w in words:
                    k, _, v = w.partition("=")
                    stage.env[k] = _expand(v, stage.env)
        elif kind == "USER":
            stage.user = value.strip()
        elif kind == "CMD":
            stage.cmd = _exec_form(value)
        elif kind == "ENTRYPOINT":
            stage.entrypoint = _exec_form(value)
        elif kind == "RUN":
            stage.runs.append(Run(line, value, stage.workdir))
    return stage


def parse_entry(argv: Sequence[str], workdir: str = "/") -> AppEntry:
    """The server and ``module:attr`` app a CMD starts; ValueError if it names none.

    Understands ``uvicorn MOD:APP ...``, ``python -m uvicorn MOD:APP``, gunicorn/hypercorn,
    and any of them inside ``sh -c "exec ..."``.
    """
    words = list(argv)
    if (
        len(words) >= 3
        and posixpath.basename(words[0]) in ("sh", "bash", "dash")
        and words[1] == "-c"
    ):
        words = shlex.split(words[2])
    while words and (words[0] == "exec" or re.match(r"^\w+=", words[0])):
        words = words[1:]
    if not words:
        raise ValueError("CMD is empty")
    exe = posixpath.basename(words[0])
    rest = words[1:]
    if re.match(r"^python(\d(\.\d+)?)?$", exe) and len(rest) >= 2 and rest[0] == "-m":
        exe, rest = rest[1], rest[2:]
    if exe not in SERVERS:
        raise ValueError(
            f"CMD runs {exe!r}, not a known ASGI server ({', '.join(sorted(SERVERS))})"
        )
    spec = next((w for w in rest if _APP_SPEC.match(w)), None)
    if spec is None:
        raise ValueError(f"CMD runs {exe} without a 'module:attribute' app")
    app_dir = workdir
    for i, w in enumerate(rest):
        if w == "--app-dir" and i + 1 < len(rest):
            app_dir = posixpath.normpath(posixpath.join(workdir, rest[i + 1]))
        elif w.startswith("--app-dir="):
            app_dir = posixpath.normpath(posixpath.join(workdir, w.split("=", 1)[1]))
    module, attr = spec.split(":", 1)
    options = tuple(w for w in rest if w != spec)
    return AppEntry(
        server=exe, module=module, attr=attr, app_dir=app_dir, argv=tuple(argv), options=options
    )


def dockerfile_entry(dockerfile: Path) -> tuple[AppEntry, dict[str, str]]:
    """What the image of ``dockerfile`` starts (ENTRYPOINT + CMD, :func:`parse_entry`) and the
    ENV it starts with; ValueError if its CMD names no server with an app."""
    dockerfile = Path(dockerfile).resolve()
    stage = stage_facts(BuildContext(root=dockerfile.parent, dockerfile=dockerfile))
    argv = (stage.entrypoint or []) + (stage.cmd or [])
    return parse_entry(argv, stage.workdir), dict(stage.env)


def image_cmd(service: str, root: Path | None = None) -> list[str]:
    """The argv the image starts (ENTRYPOINT + CMD), e.g. for running a service locally.

    Run it from the repo root (the image's WORKDIR ``/app`` holds the repo's ``shared/`` and
    ``services/``) with ``PORT`` in the environment: ``sh -c`` expands it.
    """
    stage = stage_facts(BuildContext.for_service(service, root))
    return (stage.entrypoint or []) + (stage.cmd or [])


def dockerfile_errors(stage: Stage, files: Iterable[ImageFile], rel_df: str) -> list[str]:
    """The image rules: base pinned by digest, a non-root USER, every file readable by it."""
    errors: list[str] = []
    if "@sha256:" not in stage.base_resolved:
        errors.append(
            f"{rel_df}: base image {stage.base_resolved or stage.base!r} is not pinned by digest "
            "(ARG BASE_IMAGE=name@sha256:... then FROM ${BASE_IMAGE})"
        )
    if stage.user.strip() in _ROOT_USERS:
        errors.append(f"{rel_df}: runs as root: add a non-root USER (e.g. USER 10001:10001)")
    for f in files:
        if not f.mode & 0o004:
            errors.append(
                f"{rel_df}:{f.line}: {f.context_path} lands as {f.image_path} with mode "
                f"{f.mode:o}: USER {stage.user or 'root'} cannot read it"
            )
    return errors
