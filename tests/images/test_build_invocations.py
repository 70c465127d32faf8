"""Every image build in the project uses the repo root as context and images/<svc>.Dockerfile.

``gcloud run deploy --source services/<svc>`` once built an image from the service folder,
without ``shared/``. This test finds every build invocation the project holds (shell scripts,
the Makefile, CI, ``cloudbuild*.yaml``, workflows, Dockerfile comments, and Python code that
assembles build argv) and checks each one; Python builders are verified by calling them.
"""

from __future__ import annotations

import ast
import re
import shlex
import subprocess

import pytest
import yaml

from infra.build_context import dockerfile_for
from infra.paths import REPO_ROOT
from scripts.deploy import ImageTarget, build_steps
from scripts.imagecheck import SERVICES

#: Contexts that mean "the repo root" (scripts cd there first; make's $(CURDIR) is the root).
ROOT_CONTEXTS = {".", "./", "$(CURDIR)", "$ROOT", "${ROOT}", "$REPO_ROOT", "${REPO_ROOT}"}
DOCKERFILE = re.compile(r"^(?:\./)?images/[\w${}-]+\.Dockerfile$")
BUILD = re.compile(
    r"\b(?:(?:docker|podman)\s+(?:buildx\s+|image\s+)?build|buildah\s+(?:bud|build))\b"
)
FORBIDDEN = {
    re.compile(r"\bgcloud\s+run\s+deploy\b[^\n]*--source"): "gcloud run deploy --source",
    re.compile(r"\bgcloud\s+builds\s+submit\b(?![^\n]*--config)"): (
        "gcloud builds submit without --config (it would build a Dockerfile at the source root)"
    ),
}
#: Options of docker/buildah/podman build that take a separate value.
VALUE_OPTIONS = {
    "-f",
    "--file",
    "-t",
    "--tag",
    "--build-arg",
    "-v",
    "--volume",
    "--isolation",
    "--format",
    "--iidfile",
    "--platform",
    "--label",
    "--target",
    "--network",
    "--secret",
    "--cache-from",
    "--cache-to",
    "--storage-driver",
    "--signature-policy",
    "--layers",
    "--jobs",
    "--ssh",
    "--output",
    "-o",
    "--progress",
    "--creds",
    "--cert-dir",
    "--authfile",
}
SHELL_LIKE = re.compile(r"(^|/)(Makefile|[^/]+\.(sh|bash|mk|ya?ml|Dockerfile)|\.ci/[^/]+)$")
#: Python modules that assemble build argv, and how the test verifies what they produce.
PYTHON_BUILDERS = {"scripts/deploy/_cloudbuild.py"}


def _project_files() -> list[str]:
    out = subprocess.run(
        # The project's files are what git tracks: a fresh clone has exactly these. Untracked
        # files (.tools/, .venv/ made by the Makefile) are not the project's.
        ["git", "ls-files", "--cached"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return sorted({p for p in out.splitlines() if (REPO_ROOT / p).is_file()})


def _logical_lines(text: str) -> list[tuple[int, str]]:
    lines, buf, start = [], "", 0
    for n, raw in enumerate(text.splitlines(), 1):
        if not buf:
            start = n
        stripped = raw.strip()
        if stripped.startswith("#") and not stripped.startswith(("#!",)):
            # Comments can show commands too (Dockerfile headers): keep them, minus the '#'.
            stripped = stripped.lstrip("#").strip()
        if stripped.endswith("\\"):
            buf += stripped[:-1] + " "
            continue
        lines.append((start, buf + stripped))
        buf = ""
    return lines


def check_build_argv(words: list[str], where: str) -> list[str]:
    """Problems with one build command's argv (starting after the build verb)."""
    dockerfile, positional, i = None, [], 0
    while i < len(words):
        w = words[i]
        if w in ("&&", "||", ";", "|", "&"):
            break
        if re.match(r"^(\d*|&)[<>]", w):  # a redirection, not an argument
            i += 2 if re.fullmatch(r"(\d*|&)[<>]{1,2}", w) else 1
            continue
        if w.startswith("-"):
            if "=" in w:
                name, value = w.split("=", 1)
                if name in ("-f", "--file"):
                    dockerfile = value
            elif w in VALUE_OPTIONS:
                if w in ("-f", "--file") and i + 1 < len(words):
                    dockerfile = words[i + 1]
                i += 1
        else:
            positional.append(w)
        i += 1
    problems = []
    if dockerfile is None or not DOCKERFILE.match(dockerfile):
        problems.append(f"{where}: Dockerfile {dockerfile!r} is not -f images/<service>.Dockerfile")
    context = positional[-1] if positional else None
    if context not in ROOT_CONTEXTS:
        problems.append(f"{where}: build context {context!r} is not the repo root")
    return problems


def _shell_invocations(path: str, text: str) -> list[tuple[str, list[str]]]:
    found = []
    for line_no, line in _logical_lines(text):
        m = BUILD.search(line)
        if not m:
            continue
        rest = line[m.end() :]
        try:
            words = shlex.split(rest, comments=True)
        except ValueError:
            words = rest.split()
        found.append((f"{path}:{line_no}", words))
    return found


def _cloudbuild_steps(path: str, text: str) -> list[tuple[str, list[str]]]:
    doc = yaml.safe_load(text) or {}
    found = []
    for i, step in enumerate(doc.get("steps", []) if isinstance(doc, dict) else []):
        args = [str(a) for a in step.get("args", [])]
        if "docker" in str(step.get("name", "")) and args[:1] == ["build"]:
            found.append((f"{path}: steps[{i}]", args[1:]))
    return found


def _python_build_literals(path: str, text: str) -> list[str]:
    """Places where Python code assembles a build argv (a list starting with a build verb)."""
    tree = ast.parse(text)
    hits = []
    for node in ast.walk(tree):
        if isinstance(node, ast.List | ast.Tuple) and node.elts:
            head = [e.value for e in node.elts[:2] if isinstance(e, ast.Constant)]
            if (
                head[:1] == ["build"]
                and len(node.elts) > 2
                or head[:2]
                in (
                    ["docker", "build"],
                    ["buildah", "bud"],
                    ["buildah", "build"],
                    ["podman", "build"],
                )
            ):
                hits.append(f"{path}:{node.lineno}")
    return hits


def test_every_build_invocation_uses_the_repo_root_and_images_dockerfile():
    problems: list[str] = []
    invocations = 0
    for path in _project_files():
        text = (REPO_ROOT / path).read_text(errors="replace")
        if SHELL_LIKE.search(path):
            for where, words in _shell_invocations(path, text):
                invocations += 1
                problems += check_build_argv(words, where)
            for pattern, what in FORBIDDEN.items():
                for m in pattern.finditer(text):
                    line = text.count("\n", 0, m.start()) + 1
                    problems.append(f"{path}:{line}: {what}")
        if re.search(r"(^|/)cloudbuild[^/]*\.ya?ml$", path):
            for where, args in _cloudbuild_steps(path, text):
                invocations += 1
                problems += check_build_argv(args, where)
        if path.endswith(".py") and not path.startswith("tests/"):
            for where in _python_build_literals(path, text):
                if path not in PYTHON_BUILDERS:
                    problems.append(f"{where}: builds an image; verify it in this test")
    assert not problems, "\n".join(problems)
    assert invocations >= 2, "expected at least the Dockerfile headers and the smoke script"


@pytest.mark.parametrize("service", SERVICES)
def test_cloud_build_steps_build_from_the_repo_root(service):
    target = ImageTarget(service, "us-docker.pkg.dev/p/r/x", "t")
    steps = build_steps(target, module=f"services.{service}.main")
    builds = [s for s in steps if s["args"][:1] == ["build"]]
    assert builds, steps
    for step in builds:
        assert not check_build_argv(step["args"][1:], step["id"])
        assert step["args"][step["args"].index("-f") + 1] == dockerfile_for(service)


def test_no_dockerfile_outside_images():
    stray = [
        p
        for p in _project_files()
        if re.search(r"(^|/)(Dockerfile|[^/]+\.Dockerfile)$", p) and not p.startswith("images/")
    ]
    assert not stray, f"Dockerfiles outside images/: {stray}"
    assert not list((REPO_ROOT / "services").glob("*/Dockerfile"))


@pytest.mark.parametrize(
    ("command", "ok"),
    [
        ("docker build -f images/worker.Dockerfile -t x .", True),
        ("docker build -f images/worker.Dockerfile . >/dev/null 2>&1", True),
        ("docker build -f images/worker.Dockerfile . > log", True),
        ("buildah build --isolation chroot --pull=never -f images/${svc}.Dockerfile .", True),
        ("docker build -f images/worker.Dockerfile services/worker", False),
        ("docker build services/worker", False),
        ("docker build -f services/worker/Dockerfile .", False),
    ],
)
def test_the_checker_itself(command, ok):
    words = shlex.split(command)
    verb = 3 if words[1] in ("buildx", "image") else 2
    assert (not check_build_argv(words[verb:], "x")) is ok
