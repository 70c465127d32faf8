"""The offline image check passes for both images and fails, naming the cause, when broken."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.build_context import image_tag
from scripts.imagecheck import SERVICES, check_image, check_images, image_cmd, parse_entry

#: Only catches a hang: the check's cost is measured in benchmarks/image_check.py, as a ratio
#: against the bare imports, not asserted here.
WALL_BUDGET_S = 20.0


def _errors(result) -> str:
    return "\n".join(result.errors) or "(no errors)"


def _drop_pin(repo, package: str) -> None:
    """Remove ``package``'s pin (its ``name==`` line and the indented hash lines under it)
    from the worker's requirements."""
    req = repo / "services/worker/requirements.txt"
    lines = req.read_text().split("\n")
    start = next(i for i, ln in enumerate(lines) if ln.startswith(f"{package}=="))
    end = next(
        (i for i in range(start + 1, len(lines)) if not lines[i].startswith(" ")), len(lines)
    )
    req.write_text("\n".join(lines[:start] + lines[end:]))


def test_both_images_pass_and_carry_the_program_tag():
    results = check_images(SERVICES)
    for r in results:
        assert r.ok, f"{r.service}:\n{_errors(r)}"
        assert r.tag == image_tag(r.service), r.service
        assert r.entry is not None and r.entry.server == "uvicorn"
        assert r.entry.module == f"services.{r.service.removeprefix('prediction-')}.main"
        assert r.seconds < WALL_BUDGET_S, f"{r.service} took {r.seconds} s ({r.timings})"


def test_short_and_long_service_names_agree():
    assert check_image("worker").content_hash == check_image("prediction-worker").content_hash


def test_dockerfile_without_copy_shared_fails_with_module_not_found(repo_copy, edit):
    df = repo_copy / "images/coordinator.Dockerfile"
    edit(df, "COPY shared/ /app/shared/\n", "")
    r = check_image("coordinator", repo_copy)
    assert not r.ok
    assert "ModuleNotFoundError: No module named 'shared'" in _errors(r)


def test_service_directory_as_context_fails(repo_copy):
    """``gcloud run deploy --source services/worker`` style: the unmodified Dockerfile's COPY
    sources are not in that context."""
    r = check_image("worker", repo_copy, context=repo_copy / "services/worker")
    assert not r.ok
    assert "is not in the build context" in _errors(r)
    assert "services/worker/requirements.txt" in _errors(r)


def test_service_directory_dockerfile_fails_with_module_not_found(repo_copy):
    """A Dockerfile written for the service directory builds, but its image lacks shared/."""
    svc = repo_copy / "services/worker"
    original = (repo_copy / "images/worker.Dockerfile").read_text()
    lines = [
        ln
        for ln in original.splitlines()
        if not ln.startswith(("COPY shared/", "COPY services/__init__.py"))
    ]
    text = (
        "\n".join(lines)
        .replace("COPY services/worker/requirements.txt", "COPY requirements.txt")
        .replace("COPY services/worker/ /app/services/worker/", "COPY . /app/services/worker/")
    )
    (svc / "Dockerfile").write_text(text + "\n")
    r = check_image("worker", repo_copy, dockerfile=svc / "Dockerfile", context=svc)
    assert not r.ok
    assert "ModuleNotFoundError: No module named 'shared'" in _errors(r)


def test_dockerignore_dropping_a_needed_file_fails(repo_copy):
    with (repo_copy / ".dockerignore").open("a") as f:
        f.write("shared/pubsub.py\n")
    r = check_image("worker", repo_copy)
    assert not r.ok
    assert "ModuleNotFoundError: No module named 'shared.pubsub'" in _errors(r)


def test_undeclared_dependency_fails_statically_and_at_import(repo_copy, edit):
    edit(
        repo_copy / "services/worker/predictor.py",
        "import math\n",
        "import math\n\nimport yaml  # PyYAML: in the project venv, not in the image\n",
    )
    r = check_image("worker", repo_copy)
    assert not r.ok
    text = _errors(r)
    assert "imports 'yaml' (distribution PyYAML)" in text
    assert "/app/requirements.txt does not declare" in text
    assert "ModuleNotFoundError: No module named 'yaml'" in text


def test_lazy_undeclared_import_is_caught_by_the_static_scan(repo_copy, edit):
    edit(
        repo_copy / "services/worker/predictor.py",
        "        decay = 0.5",
        "        import croniter  # noqa: F401 - a lazy import the import test never runs\n\n"
        "        decay = 0.5",
    )
    r = check_image("worker", repo_copy)
    assert not r.ok
    assert "imports 'croniter' (distribution croniter)" in _errors(r)
    assert "ModuleNotFoundError" not in _errors(r)


def test_optional_and_type_checking_imports_are_not_required(repo_copy, edit):
    edit(
        repo_copy / "services/worker/predictor.py",
        "import math\n",
        "import math\nfrom typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    import yaml\n"
        "try:\n    import croniter\nexcept ImportError:\n    croniter = None\n",
    )
    r = check_image("worker", repo_copy)
    assert r.ok, _errors(r)


def test_requirements_copied_after_the_install_fails(repo_copy, edit):
    df = repo_copy / "images/worker.Dockerfile"
    text = df.read_text()
    copy_line = "COPY services/worker/requirements.txt /app/requirements.txt\n"
    text = text.replace(copy_line, "")
    text = text.replace("USER 10001", copy_line + "USER 10001")
    df.write_text(text)
    r = check_image("worker", repo_copy)
    assert not r.ok
    assert "installs /app/requirements.txt, which no COPY before that line" in _errors(r)


def test_incomplete_pins_fail(repo_copy):
    _drop_pin(repo_copy, "h11")
    r = check_image("worker", repo_copy)
    assert not r.ok
    assert "uvicorn requires h11, which is not pinned there" in _errors(r)


def test_server_not_declared_fails(repo_copy):
    _drop_pin(repo_copy, "uvicorn")
    r = check_image("worker", repo_copy)
    assert not r.ok
    assert "CMD runs uvicorn, which /app/requirements.txt does not declare" in _errors(r)


def test_root_user_and_unpinned_base_fail(repo_copy, edit):
    df = repo_copy / "images/worker.Dockerfile"
    edit(df, "USER 10001:10001\n", "")
    text = df.read_text()
    df.write_text(
        "\n".join(
            "ARG BASE_IMAGE=python:3.11-slim" if ln.startswith("ARG BASE_IMAGE=") else ln
            for ln in text.splitlines()
        )
    )
    r = check_image("worker", repo_copy)
    assert not r.ok
    assert "runs as root" in _errors(r)
    assert "is not pinned by digest" in _errors(r)


def test_unreadable_file_fails(repo_copy):
    (repo_copy / "shared/pubsub.py").chmod(0o600)
    r = check_image("worker", repo_copy)
    assert not r.ok
    assert "shared/pubsub.py lands as /app/shared/pubsub.py with mode 600" in _errors(r)


def test_missing_dockerfile_is_an_error_not_an_exception(tmp_path: Path):
    r = check_image("worker", tmp_path)
    assert not r.ok and "no Dockerfile" in _errors(r)


@pytest.mark.parametrize(
    ("argv", "module", "app_dir"),
    [
        (["sh", "-c", "exec uvicorn pkg.main:app --port ${PORT:-8080}"], "pkg.main", "/app"),
        (["uvicorn", "pkg.main:app", "--app-dir", "src"], "pkg.main", "/app/src"),
        (["python", "-m", "uvicorn", "pkg.main:app"], "pkg.main", "/app"),
        (["/bin/sh", "-c", "PORT=1 exec gunicorn -k x pkg.wsgi:application"], "pkg.wsgi", "/app"),
    ],
)
def test_parse_entry(argv, module, app_dir):
    entry = parse_entry(argv, "/app")
    assert (entry.module, entry.app_dir) == (module, app_dir)


@pytest.mark.parametrize(
    "argv", [["python", "main.py"], ["uvicorn", "--port", "80"], ["sh", "-c", ""]]
)
def test_parse_entry_rejects_what_is_not_a_server_with_an_app(argv):
    with pytest.raises(ValueError):
        parse_entry(argv, "/app")


def test_image_cmd_is_what_the_local_platform_runs():
    for service in SERVICES:
        argv = image_cmd(service)
        assert argv[:2] == ["sh", "-c"], argv
        assert "uvicorn services." in argv[2] and "${PORT:-8080}" in argv[2]


def test_pins_without_the_extras_a_dependency_wants_fail_under_hashes(repo_copy, edit):
    """Found by the real build: pip --require-hashes refused google-api-core[grpc] pinned
    without its extra."""
    edit(
        repo_copy / "services/worker/requirements.txt",
        "google-api-core[grpc]==",
        "google-api-core==",
    )
    r = check_image("worker", repo_copy)
    assert not r.ok
    assert "requires google-api-core[grpc]; with hashes pip installs it only if pinned" in (
        _errors(r)
    )


def test_extra_pin_without_the_plain_pin_fails_under_hashes(repo_copy):
    req = repo_copy / "services/worker/requirements.txt"
    lines = req.read_text().split("\n")
    start = lines.index(next(ln for ln in lines if ln.startswith("google-api-core==")))
    end = next(i for i in range(start + 1, len(lines)) if not lines[i].startswith(" "))
    req.write_text("\n".join(lines[:start] + lines[end:]))
    r = check_image("worker", repo_copy)
    assert not r.ok
    assert "google-api-core[grpc] is pinned but plain google-api-core is not" in _errors(r)
