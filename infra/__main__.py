"""The prediction platform's Pulumi program: config in, components composed, outputs out."""

import sys
from pathlib import Path

# Pulumi runs this directory with itself on sys.path; the program imports `infra.*` and
# `shared.*` (the services' env contract) from the repository root.
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import pulumi  # noqa: E402

from infra.program import compose, load_stack  # noqa: E402

config, deploy, secret_values = load_stack()
for name, value in compose(config, deploy, secret_values).items():
    pulumi.export(name, value)
