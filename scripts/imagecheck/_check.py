"""The image check of one service, of several, and of the images a plan builds."""

from __future__ import annotations

import functools
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from infra.build_context import (
    TAG_LENGTH,
    BuildContext,
    BuildContextError,
    ImageFile,
    dockerfile_for,
)
from infra.paths import REPO_ROOT
from policy.images import ImageBuild

from ._dockerfile import SERVERS, AppEntry, Stage, dockerfile_errors, parse_entry, stage_facts
from ._isolated import import_in_isolation
from ._requirements import Declared, closure_errors, declared_requirements
from ._scan import ImageModules, scan_imports
from ._venv import SCRATCH, Venv, default_site_packages, site_for

#: The services with an image (``images/<short name>.Dockerfile``).
SERVICES: tuple[str, ...] = ("prediction-coordinator", "prediction-worker")
#: Seconds the isolated import may take before the check gives up.
IMPORT_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class ImageCheckResult:
    service: str
    dockerfile: str
    context: str
    ok: bool
    errors: tuple[str, ...]
    content_hash: str | None = None
    entry: AppEntry | None = None
    files: int = 0
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def tag(self) -> str | None:
        """The image tag the Pulumi program uses (:func:`infra.build_context.image_tag`)."""
        return self.content_hash[:TAG_LENGTH] if self.content_hash else None

    def to_dict(self) -> dict:
        data = asdict(self)
        data["tag"] = self.tag
        data["errors"] = list(self.errors)
        return data


def check_image(
    service: str,
    root: Path | str | None = None,
    *,
    dockerfile: Path | str | None = None,
    context: Path | str | None = None,
    site_packages: Path | str | None = None,
    python: str | None = None,
    timeout: float = IMPORT_TIMEOUT_S,
) -> ImageCheckResult:
    """Check one service's image offline; never raises for a broken image (see ``errors``).

    :param service: ``prediction-worker`` or its short name ``worker``.
    :param root: the repository (default: this checkout); the Dockerfile is
        ``<root>/images/<short name>.Dockerfile`` and the context is ``root``.
    :param dockerfile: another Dockerfile (absolute, or relative to ``root``).
    :param context: another build context (e.g. the service directory, to show that fails).
    :param site_packages: where the requirement distributions are installed (the project
        venv's site-packages by default).
    :param python: the interpreter for the isolated import (this one by default; a 3.11 like
        the image's base).
    """
    started = time.perf_counter()
    timings: dict[str, float] = {}
    root_p = Path(root or REPO_ROOT).resolve()
    ctx = Path(context).resolve() if context else root_p
    df = Path(dockerfile) if dockerfile else root_p / dockerfile_for(service)
    df = (df if df.is_absolute() else root_p / df).resolve()
    bc = BuildContext(root=ctx, dockerfile=df)
    errors: list[str] = []

    def done(**kw) -> ImageCheckResult:
        return ImageCheckResult(
            service=service,
            dockerfile=str(df),
            context=str(ctx),
            ok=not errors,
            errors=tuple(errors),
            seconds=round(time.perf_counter() - started, 4),
            timings=timings,
            **kw,
        )

    if not df.is_file():
        errors.append(f"no Dockerfile at {df}")
        return done()
    lap = time.perf_counter()
    try:
        files = bc.image_files()
        content_hash = bc.content_hash()
    except (BuildContextError, OSError) as exc:
        errors.append(str(exc))
        return done()
    timings["context"] = round(time.perf_counter() - lap, 4)
    stage = stage_facts(bc)
    rel_df = _display(df, root_p)

    errors.extend(dockerfile_errors(stage, files, rel_df))
    try:
        entry = parse_entry((stage.entrypoint or []) + (stage.cmd or []), stage.workdir)
    except ValueError as exc:
        errors.append(f"{rel_df}: {exc}")
        return done(content_hash=content_hash, files=len(files))

    declared, problems = declared_requirements(stage, {f.image_path: f for f in files}, ctx, rel_df)
    errors.extend(problems)
    if declared is None:
        return done(content_hash=content_hash, entry=entry, files=len(files))

    lap = time.perf_counter()
    venv = Venv.at(Path(site_packages).resolve() if site_packages else default_site_packages())
    errors.extend(closure_errors(declared, venv))
    server_dist = venv.console_scripts.get(entry.server)
    if server_dist is None or server_dist not in declared.reqs:
        errors.append(f"{rel_df}: CMD runs {entry.server}, which {declared.shown} does not declare")
    timings["requirements"] = round(time.perf_counter() - lap, 4)

    errors.extend(
        _import_laid_out(
            files,
            ctx,
            stage,
            entry,
            declared,
            venv,
            rel_df=rel_df,
            python=python or sys.executable,
            timeout=timeout,
            timings=timings,
        )
    )
    return done(content_hash=content_hash, entry=entry, files=len(files))


def _import_laid_out(
    files: Iterable[ImageFile],
    ctx: Path,
    stage: Stage,
    entry: AppEntry,
    declared: Declared,
    venv: Venv,
    *,
    rel_df: str,
    python: str,
    timeout: float,
    timings: dict[str, float],
) -> list[str]:
    """Lay the image out in a temp root, then import the entry module there in isolation while
    the static scan of what it reaches runs (the two overlap: the import is a subprocess)."""
    errors: list[str] = []
    lap = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="layout-", dir=SCRATCH))
    try:
        rootfs = work / "root"
        for f in files:
            dst = rootfs / f.image_path.lstrip("/")
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ctx / f.context_path, dst)
            dst.chmod(f.mode)
        (rootfs / stage.workdir.lstrip("/")).mkdir(parents=True, exist_ok=True)
        search = [entry.app_dir] + [
            p for p in stage.env.get("PYTHONPATH", "").split(":") if p.startswith("/")
        ]
        modules = ImageModules(rootfs, search)
        installed = frozenset(n for n in declared.reqs if n in venv.dists)
        site = site_for(venv, installed)
        timings["layout"] = round(time.perf_counter() - lap, 4)

        def scan() -> None:
            if modules.find(entry.module) is None:
                errors.append(
                    f"{rel_df}: CMD's app module {entry.module} is not in the image "
                    f"(searched {', '.join(search)})"
                )
            else:
                errors.extend(
                    scan_imports(modules, entry.module, venv, set(installed), declared.shown)
                )

        lap = time.perf_counter()
        failure = import_in_isolation(
            python=python,
            rootfs=rootfs,
            site=site,
            stage=stage,
            entry=entry,
            server_module=SERVERS[entry.server],
            timeout=timeout,
            meanwhile=scan,
            cpu=timings,
        )
        timings["import"] = round(time.perf_counter() - lap, 4)
        if failure:
            errors.append(
                f"importing {entry.module}:{entry.attr} in the image layout failed: {failure}"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return errors


def check_images(
    services: Iterable[str] = SERVICES, root: Path | str | None = None, **kwargs
) -> list[ImageCheckResult]:
    """:func:`check_image` for several services, one after the other.

    Not in threads: CPython 3.11's ``ast`` keeps interpreter-wide state (gh-106905), and a
    static scan in a worker thread failed at random with "AST constructor recursion depth
    mismatch" in CI although this module serialised its own parses. Each check still
    overlaps its static scan with its isolated import (a subprocess).
    """
    return [check_image(s, root, **kwargs) for s in services]


def check_builds(builds: Iterable[ImageBuild]) -> Mapping[str, tuple[str, ...]]:
    """The image check of each build a plan declares (:func:`policy.images.image_builds`):
    image URN -> its errors (``()``: it passes). What rule PF10 reads as ``Facts``."""
    return {b.urn: _checked_build(b.service, b.context, b.dockerfile, b.tag) for b in builds}


@functools.lru_cache(maxsize=64)
def _checked_build(service: str, context: str, dockerfile: str, tag: str) -> tuple[str, ...]:
    """Errors of the image check; cached by the content-hash tag (same inputs, same answer)."""
    del tag  # the cache key: the tag is the content hash of everything the check reads
    return check_image(service, context, dockerfile=dockerfile).errors


def _display(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)
