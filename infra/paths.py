"""Where things are in the checkout: the one place that computes the repository root.

Everything that needs the root imports it from here (``from infra.paths import REPO_ROOT``).
Only the two entry points Pulumi runs as plain files (``infra/__main__.py`` and
``policy/__main__.py``) compute it themselves: they must put the root on ``sys.path``
before any ``infra`` import can work.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["REPO_ROOT", "PROGRAM_DIR", "PROGRAM", "BOOTSTRAP_DIR"]

#: The checkout: ``Pulumi.yaml``, ``Pulumi.<stack>.yaml``, and the images' build context.
REPO_ROOT = Path(__file__).resolve().parent.parent
#: Where the Pulumi CLI runs the program (``main: infra/`` in ``Pulumi.yaml``): the program's
#: relative paths (an image's build context, its Dockerfile) start here.
PROGRAM_DIR = REPO_ROOT / "infra"
#: The platform program, as the Pulumi CLI runs it.
PROGRAM = PROGRAM_DIR / "__main__.py"
#: The one-time bootstrap program and its stack files.
BOOTSTRAP_DIR = PROGRAM_DIR / "bootstrap"
