"""``platform images check``: exit codes, content hashes, the missing module named."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from infra.build_context import image_tag
from scripts.images_cli import app

runner = CliRunner()


def test_help():
    result = runner.invoke(app, ["check", "--help"])
    assert result.exit_code == 0, result.output
    assert "--dockerfile" in result.output


def test_check_passes_and_prints_each_content_hash():
    result = runner.invoke(app, ["check"])
    assert result.exit_code == 0, result.output
    for service in ("prediction-coordinator", "prediction-worker"):
        assert service in result.output
        assert f"tag {image_tag(service)}" in result.output, result.output
    assert result.output.count("content hash ") == 2


def test_check_json():
    result = runner.invoke(app, ["check", "worker", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["ok"] is True
    (image,) = data["images"]
    assert image["tag"] == image_tag("worker") and len(image["content_hash"]) == 64


def test_dockerfile_without_shared_exits_1_naming_the_module(repo_copy):
    df = repo_copy / "images/coordinator.Dockerfile"
    df.write_text(df.read_text().replace("COPY shared/ /app/shared/\n", ""))
    result = runner.invoke(app, ["check", "coordinator", "--root", str(repo_copy), "-f", str(df)])
    assert result.exit_code == 1, result.output
    assert "ModuleNotFoundError: No module named 'shared'" in result.output


def test_dockerfile_option_needs_one_service_usage_64():
    result = runner.invoke(app, ["check", "worker", "coordinator", "-f", "x.Dockerfile"])
    assert result.exit_code == 64, result.output


def test_unknown_option_is_usage_64():
    result = runner.invoke(app, ["check", "--nope"])
    assert result.exit_code == 64, result.output
