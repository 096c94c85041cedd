"""Unit-test wiring: run the verifier's tests once per implementation of its hot path.

jwt_trust._hotpath has a Python reference and a C twin (jwt_trust._speedups) that the verifier uses when
it is built. A module that declares ``pytestmark = pytest.mark.usefixtures("each_hotpath")`` runs every
test twice, so each rule is proven on both implementations, not just on the one this machine loads.
"""

from __future__ import annotations

import importlib

import pytest

from jwt_trust import _hotpath

HOTPATH_FUNCTIONS = ("check_compact", "parse_object", "check_signature", "check_claims")


@pytest.fixture(params=["c", "python"])
def each_hotpath(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "c":
        # Not optional here: the differential tests need it, and CI must prove the twin it ships.
        implementation = importlib.import_module("jwt_trust._speedups")
        prefix = ""
    else:
        implementation, prefix = _hotpath, "py_"
    for name in HOTPATH_FUNCTIONS:
        monkeypatch.setattr(_hotpath, name, getattr(implementation, prefix + name))
    return str(request.param)
