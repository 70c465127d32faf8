"""Every preflight rule id is documented in the README's rule table."""

from __future__ import annotations

import re

from infra.paths import REPO_ROOT
from policy.rules import RULES


def test_every_rule_id_is_in_the_readme_table() -> None:
    text = (REPO_ROOT / "README.md").read_text()
    section = text.split("## Preflight rules", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (PF\d\d) \| (\w+) \| ", section, flags=re.MULTILINE)
    assert rows == [(r.id, r.severity.value) for r in RULES]
