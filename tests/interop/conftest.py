"""Wiring for the interop tests: the cached Go/Node helpers and the algorithm × library matrix.

The helpers are built (or reused) once per session by ``build.sh``, which prints their cache
directory. Each matrix test records its cell here before asserting, and the matrix is printed in the
terminal summary whatever the output capture settings, so a CI log always shows it.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
BUILD_TIMEOUT_SECONDS = 900  # a cold Go build on a busy 2-core machine; warm runs take milliseconds


@dataclass
class Matrix:
    """Cells keyed by (direction, algorithm, library); a value is "ok", "n/a: why" or "FAIL: why"."""

    cells: dict[tuple[str, str, str], str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def record(self, direction: str, alg: str, library: str, outcome: str) -> None:
        self.cells[(direction, alg, library)] = outcome

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def render(self) -> list[str]:
        """One table per direction (cells show "ok", "n/a" or "FAIL"), then the details and notes."""
        lines: list[str] = []
        for direction in dict.fromkeys(d for d, _, _ in self.cells):
            algs = list(dict.fromkeys(alg for d, alg, _ in self.cells if d == direction))
            libraries = list(dict.fromkeys(lib for d, _, lib in self.cells if d == direction))
            rows = [["alg", *libraries]]
            for alg in algs:
                outcomes = (self.cells.get((direction, alg, lib), "-") for lib in libraries)
                rows.append([alg, *(outcome.split(":")[0] for outcome in outcomes)])
            widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
            lines.append(direction)
            for row in rows:
                lines.append(
                    ("  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))).rstrip()
                )
            lines.extend(
                f"  {alg} × {lib}: {outcome}"
                for (d, alg, lib), outcome in self.cells.items()
                if d == direction and outcome != "ok"
            )
            lines.append("")
        lines.extend(f"note: {text}" for text in self.notes)
        return lines


MATRIX_KEY = pytest.StashKey[Matrix]()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    matrix = config.stash.get(MATRIX_KEY, None)
    if matrix is None or not matrix.cells:
        return
    terminalreporter.section("jwt-trust interop matrix (algorithm × library, both directions)")
    for line in matrix.render():
        terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def interop_matrix(pytestconfig: pytest.Config) -> Matrix:
    return pytestconfig.stash.setdefault(MATRIX_KEY, Matrix())


@pytest.fixture(scope="session")
def interop_tools() -> Path:
    """The cache directory holding ``interop-go`` and ``node/interop.mjs`` (built on first use)."""
    completed = subprocess.run(
        ["bash", str(HERE / "build.sh")],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_SECONDS,
        check=False,
    )
    if completed.returncode != 0:
        pytest.fail(f"tests/interop/build.sh failed:\n{completed.stderr[-4000:]}", pytrace=False)
    return Path(completed.stdout.strip().splitlines()[-1])
