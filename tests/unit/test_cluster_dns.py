"""The node harness's cluster DNS answers Service names as a cluster's DNS does (no cluster needed)."""

from __future__ import annotations

import socket
import struct
import time
from typing import Any

import pytest

from jwt_trust_testing.dns import ClusterDNS


def query(name: str, qtype: int = 1, ident: int = 0x1234) -> bytes:
    labels = b"".join(bytes([len(part)]) + part.encode() for part in name.rstrip(".").split("."))
    return struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0) + labels + b"\0" + struct.pack("!HH", qtype, 1)


def parse(response: bytes) -> tuple[int, int, int, list[str]]:
    ident, flags, _, ancount, _, _ = struct.unpack("!HHHHHH", response[:12])
    offset = 12
    while response[offset]:
        offset += 1 + response[offset]
    offset += 5
    addresses = []
    for _ in range(ancount):
        _, rtype, _, _, length = struct.unpack("!HHHIH", response[offset : offset + 12])
        assert rtype == 1
        addresses.append(socket.inet_ntoa(response[offset + 12 : offset + 12 + length]))
        offset += 12 + length
    return ident, flags & 0x8000, flags & 0x000F, addresses


@pytest.fixture
def dns() -> ClusterDNS:
    server = ClusterDNS(plane=Any, address="127.0.0.1")  # type: ignore[arg-type]
    server._services = {"kubernetes.default": "10.0.0.1", "jwt-trust-metrics.jwt-trust-system": "10.0.0.7"}
    server._listed_at = time.monotonic() + 3600  # never list from the (absent) API server here
    return server


def test_a_service_name_resolves_to_its_cluster_ip(dns: ClusterDNS) -> None:
    assert parse(dns.answer(query("kubernetes.default.svc.cluster.local"))) == (
        0x1234,
        0x8000,
        0,
        ["10.0.0.1"],
    )
    assert parse(dns.answer(query("JWT-TRUST-METRICS.jwt-trust-system.svc.cluster.local.")))[3] == [
        "10.0.0.7"
    ]


def test_other_record_types_of_a_service_name_have_no_answer_but_exist(dns: ClusterDNS) -> None:
    # AAAA: NOERROR with no answer, so that a resolver asking for both families uses the A record.
    assert parse(dns.answer(query("kubernetes.default.svc.cluster.local", qtype=28))) == (
        0x1234,
        0x8000,
        0,
        [],
    )


@pytest.mark.parametrize(
    "name",
    [
        "kubernetes.default.svc",  # the search list completes short names before they reach a server
        "kubernetes.default.svc.jwt-trust-system.svc.cluster.local",
        "missing.default.svc.cluster.local",
        "pypi.org",
    ],
)
def test_everything_else_is_nxdomain(dns: ClusterDNS, name: str) -> None:
    assert parse(dns.answer(query(name))) == (0x1234, 0x8000, 3, [])
