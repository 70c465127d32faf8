"""A throwaway git repository shaped like this one: two services, shared/, repo-root images."""

from __future__ import annotations

import subprocess
from pathlib import Path

DOCKERFILE = """\
ARG BASE_IMAGE=python:3.11-slim@sha256:{zeros}
FROM ${{BASE_IMAGE}}
WORKDIR /app
COPY services/{short}/requirements.txt /app/requirements.txt
RUN pip install -r /app/requirements.txt
COPY shared/ /app/shared/
COPY services/__init__.py /app/services/__init__.py
COPY services/{short}/ /app/services/{short}/
CMD ["sh", "-c", "exec uvicorn services.{short}.main:app --port ${{PORT:-8080}}"]
"""


class TempRepo:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.git("init", "-q", "-b", "main")
        self.git("config", "user.email", "dev@example.com")
        self.git("config", "user.name", "Dev")
        self.git("config", "commit.gpgsign", "false")
        for short in ("coordinator", "worker"):
            self.write(f"images/{short}.Dockerfile", DOCKERFILE.format(short=short, zeros="0" * 64))
            self.write(f"services/{short}/__init__.py", "")
            self.write(f"services/{short}/main.py", f"app = '{short}'\n")
            self.write(f"services/{short}/requirements.txt", "fastapi==0.110.0\n")
            self.write(f"services/{short}/tests/test_x.py", "")
        self.write("services/__init__.py", "")
        self.write("shared/__init__.py", "")
        self.write("shared/contract.py", "X = 1\n")
        self.write(".dockerignore", "**/tests\n**/__pycache__\n.git\n")
        self.write("README.md", "# demo\n")

    def git(self, *args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(self.root), *args], check=True, capture_output=True, text=True
        ).stdout.strip()

    def write(self, rel: str, text: str) -> None:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def commit(self, message: str, **files: str) -> str:
        for rel, text in files.items():
            self.write(rel.replace("__", "/"), text)
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        return self.git("rev-parse", "HEAD")
