"""Generated documentation matches its source, so the docs cannot drift from the code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_crd_reference_is_generated_from_the_current_crds() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "crd_reference.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_the_crd_reference_documents_every_spec_field_with_a_description() -> None:
    text = (ROOT / "docs" / "crd-reference.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| `spec")]
    assert len(rows) > 30
    assert all(not line.rstrip().endswith("|  |") for line in rows), "a spec field without a description"
