"""Every CI workflow and cloudbuild.yaml: parseable, and every command they run exists here
(make targets in the Makefile, console scripts in pyproject, modules importable)."""

from __future__ import annotations

import importlib.util
import re
import shlex
import tomllib
from pathlib import Path

import pytest
import yaml

from infra.paths import REPO_ROOT

ROOT = REPO_ROOT
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
CLOUDBUILD = ROOT / "cloudbuild.yaml"
#: Programs the CI images provide (not this project's): anything else must be ours.
SYSTEM_TOOLS = {
    "apt-get",
    "bash",
    "cat",
    "cd",
    "docker",
    "echo",
    "export",
    "for",
    "done",
    "do",
    "gcloud",
    "git",
    "mkdir",
    "pip",
    "python",
    "python3",
    "sdk=",
    "set",
    "test",
    "uv",
}


def _make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([a-zA-Z][\w-]*):", text, re.M))


def _scripts() -> set[str]:
    doc = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return set(doc["project"]["scripts"])


def _lines(script: str) -> list[str]:
    """Simple commands of a shell script: split on ; && || | outside quotes."""
    text = script.replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
        lexer.whitespace_split = True
        current: list[str] = []
        for token in lexer:
            if token in (";", "&&", "||", "|", "&"):
                if current:
                    out.append(shlex.join(current))
                current = []
            elif token.startswith("#") and not current:
                break
            else:
                current.append(token)
        if current:
            out.append(shlex.join(current))
    return out


def _workflow_commands(path: Path) -> list[tuple[str, str]]:
    doc = yaml.safe_load(path.read_text())
    found = []
    for job_name, job in doc["jobs"].items():
        for i, step in enumerate(job.get("steps", [])):
            if "run" in step:
                for line in _lines(step["run"]):
                    found.append((f"{path.name}: jobs.{job_name}.steps[{i}]", line))
    return found


def _cloudbuild_commands() -> list[tuple[str, str]]:
    doc = yaml.safe_load(CLOUDBUILD.read_text())
    found = []
    for step in doc["steps"]:
        args = [str(a) for a in step.get("args", [])]
        if step.get("entrypoint") == "bash" and args[:1] == ["-c"]:
            for line in _lines(args[1]):
                found.append((f"cloudbuild.yaml: {step['id']}", line))
    return found


def _problems(where: str, line: str, targets: set[str], scripts: set[str]) -> list[str]:
    try:
        words = shlex.split(line)
    except ValueError:
        words = line.split()
    while words and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]):
        words = words[1:]  # VAR=value prefixes
    if not words:
        return []
    head = words[0]
    if head == "make":
        goals = [w for w in words[1:] if not w.startswith("-") and "=" not in w]
        return [
            f"{where}: make target '{g}' is not in the Makefile" for g in goals if g not in targets
        ]
    name = head.removeprefix(".venv/bin/")
    if head.startswith(".venv/bin/") and name not in scripts | {"python", "pytest", "ruff"}:
        return [f"{where}: '{head}' is not a console script of pyproject.toml"]
    if name in ("python", "python3") and "-m" in words:
        module = words[words.index("-m") + 1]
        if importlib.util.find_spec(module) is None:
            return [f"{where}: python -m {module}: no such module"]
        return []
    if name in scripts or name in SYSTEM_TOOLS or head.startswith(".venv/bin/"):
        return []
    return [f"{where}: '{head}' is neither a project command nor a known tool"]


def test_there_are_the_three_workflows_and_cloudbuild():
    assert {p.name for p in WORKFLOWS} >= {"ci.yml", "deploy.yml", "drift.yml"}
    assert CLOUDBUILD.exists()


@pytest.mark.parametrize("path", [*WORKFLOWS, CLOUDBUILD], ids=lambda p: p.name)
def test_every_command_exists_in_the_project(path):
    targets, scripts = _make_targets(), _scripts()
    commands = _cloudbuild_commands() if path == CLOUDBUILD else _workflow_commands(path)
    assert commands, f"{path.name}: no commands found"
    problems = [p for where, line in commands for p in _problems(where, line, targets, scripts)]
    assert not problems, "\n".join(problems)


def test_the_checker_catches_typos():
    targets, scripts = _make_targets(), _scripts()
    assert _problems("x", "make tset", targets, scripts)
    assert _problems("x", ".venv/bin/deplyo --stack prod", targets, scripts)
    assert _problems("x", "python -m scripts.nope", targets, scripts)
    assert _problems("x", "terraform apply", targets, scripts)
    assert not _problems("x", ".venv/bin/deploy --stack prod --yes", targets, scripts)


def _load(name: str) -> dict:
    doc = yaml.safe_load((ROOT / ".github" / "workflows" / name).read_text())
    # YAML 1.1 reads the key `on` as True.
    doc["on"] = doc.pop(True, doc.get("on"))
    return doc


def test_ci_runs_make_test_on_push_and_pull_request():
    doc = _load("ci.yml")
    assert {"push", "pull_request"} <= set(doc["on"])
    runs = [s.get("run", "") for s in doc["jobs"]["test"]["steps"]]
    assert any(r.strip() == "make test" for r in runs)


def test_deploy_queues_uses_federation_and_no_keys():
    doc = _load("deploy.yml")
    assert doc["on"]["push"]["branches"] == ["main"]
    assert doc["concurrency"]["group"] and doc["concurrency"]["cancel-in-progress"] is False
    assert doc["permissions"]["id-token"] == "write"
    deploy = doc["jobs"]["deploy"]
    assert deploy["needs"] == "test"
    auth = [
        s
        for s in deploy["steps"]
        if str(s.get("uses", "")).startswith("google-github-actions/auth")
    ]
    assert auth and "workload_identity_provider" in auth[0]["with"]
    assert "credentials_json" not in auth[0]["with"], "no long-lived keys"
    runs = " ".join(s.get("run", "") for s in deploy["steps"])
    assert "deploy --stack prod --yes" in runs
    text = (ROOT / ".github" / "workflows" / "deploy.yml").read_text()
    assert "credentials_json" not in text and "GOOGLE_CREDENTIALS" not in text


def test_deploy_may_create_github_deployments_with_the_workflows_token():
    doc = _load("deploy.yml")
    # scripts/notify posts the deployment and its statuses with GITHUB_TOKEN: the token needs
    # `deployments: write` and the deploy step must receive it (Actions passes it only there).
    assert doc["permissions"]["deployments"] == "write", doc["permissions"]
    assert doc["permissions"]["contents"] == "read" and doc["permissions"]["id-token"] == "write"
    (step,) = [s for s in doc["jobs"]["deploy"]["steps"] if "deploy --stack" in s.get("run", "")]
    assert step.get("env", {}).get("GITHUB_TOKEN") == "${{ github.token }}", step


def test_drift_runs_daily_and_fails_on_drift():
    doc = _load("drift.yml")
    assert doc["on"]["schedule"][0]["cron"]
    runs = " ".join(s.get("run", "") for s in doc["jobs"]["drift"]["steps"])
    assert "drift --stack prod" in runs and "|| true" not in runs  # exit 2 fails the run


def test_cloudbuild_deploys_through_the_cloudbuild_builder_as_the_bootstraps_identities():
    from scripts.plan import bootstrap_stack_config

    doc = yaml.safe_load(CLOUDBUILD.read_text())
    subs = doc["substitutions"]
    boot = bootstrap_stack_config("prod")["prediction-platform-bootstrap:bootstrap"]
    # The build runs as the bootstrap's deploy identity (no key), logging as that requires.
    assert subs["_DEPLOYER"] == boot["deployer_account_id"]
    assert doc["serviceAccount"] == (
        "projects/$PROJECT_ID/serviceAccounts/${_DEPLOYER}@$PROJECT_ID.iam.gserviceaccount.com"
    )
    assert doc["options"]["logging"] == "CLOUD_LOGGING_ONLY"
    assert subs["_PULUMI_BACKEND_URL"] == f"gs://{boot['state_bucket']}"
    assert subs["_LOCK_DATABASE"] == boot["lock_database"]
    scripts = " ".join(" ".join(map(str, s.get("args", []))) for s in doc["steps"])
    # Images are built by the same code as `deploy --builder cloudbuild` from GitHub: no
    # second copy of the build steps here (scripts/deploy/_cloudbuild.py build_steps).
    assert "--builder cloudbuild" in scripts
    assert "docker build" not in scripts and "image_tag" not in scripts


#: Paths a step may write to outside the work tree (Cloud Build mounts the checkout at
#: /workspace and runs each step in it).
_OUTSIDE_WORK_TREE = ("/dev/null", "/tmp/", "/builder/home/", "/root/")
_WRITERS = {"mkdir", "touch", "tee", "cp", "mv", "install", "ln"}


def _writes(line: str) -> list[str]:
    """Paths a simple shell command writes: redirection targets and file-creating commands'."""
    words = shlex.split(line)
    targets = [
        w.lstrip(">&") or nxt
        for w, nxt in zip(words, [*words[1:], ""], strict=True)
        if w.startswith(">") or w.startswith("&>")
    ]
    if words and words[0] in _WRITERS:
        args = [w for w in words[1:] if not w.startswith("-") and not w.startswith(">")]
        targets += args if words[0] in ("mkdir", "touch") else args[-1:]
    return [t for t in targets if t]


def test_cloudbuild_writes_nothing_into_the_work_tree():
    # `deploy` refuses a dirty tree: a step that leaves files in the checkout (the former
    # `tags/` step) stops the pipeline's own deploy step.
    written = [
        (where, path)
        for where, line in _cloudbuild_commands()
        for path in _writes(line)
        if not path.startswith(_OUTSIDE_WORK_TREE)
    ]
    assert not written, f"cloudbuild.yaml writes into the checkout: {written}"
    # make's own outputs (.venv, .tools, caches) are git-ignored: tests/images and .ci/run.
    makes = [line for _, line in _cloudbuild_commands() if line.startswith("make")]
    assert sorted(makes) == ["make setup", "make test"], makes


def test_the_write_checker_sees_redirections_and_created_files():
    assert _writes("echo x > /workspace/tags/a") == ["/workspace/tags/a"]
    assert _writes("mkdir -p /workspace/tags") == ["/workspace/tags"]
    assert _writes("python -c 1 >> out.txt") == ["out.txt"]
    assert _writes("apt-get install -y make >/dev/null") == ["/dev/null"]
    assert _writes("make test") == []
