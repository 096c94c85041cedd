"""Tests of the operator's Issuer decisions (``jwt_trust.kube.issuers``), without a cluster.

The module is pure, so these tests drive it exactly the way the handler does: parse the spec, call
:func:`step` with what the Secret and the status hold, then feed the Secret data and ``status.keys``
it returns back into the next call. A simulated timeline checks the promises the rest of the system
relies on: a key signs only after it has been published for P + M, the key set stays small, a lost
Secret never leaves a key that can sign without having been published, and no private key material
ever reaches the status.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jwt_trust.keys import b64url_encode, generate_private_key, public_jwk, thumbprint
from jwt_trust.kube.issuers import (
    MAX_EXTERNAL_KEYS,
    ExternalJWKS,
    IssuerSpec,
    SpecError,
    Step,
    iso,
    load_stored,
    parse_external_jwks,
    parse_issuer_spec,
    records_from_status,
    secret_name,
    status_keys,
    step,
    stored_public_keys,
)
from jwt_trust.rotation import MAX_KEYS, KeyRecord, OnRevoke, RotationSpec, key_state, signing_key
from jwt_trust.signer import KEYS_FILE, SigningKeys, render_secret_data

T0 = 1_700_000_000
ISSUER = "https://issuer.example"
# A compressed schedule so a timeline of many rotations stays cheap: R = 1h, T = 10m, P = S = M = 1m.
FAST_ROTATION = {
    "every": "1h",
    "maxTokenLifetime": "10m",
    "propagation": "1m",
    "leeway": "10s",
    "margin": "1m",
}


def issuer_spec(**fields: Any) -> IssuerSpec:
    return parse_issuer_spec({"issuer": ISSUER, "algorithm": "EdDSA", **fields})


def spec_error(spec: Mapping[str, Any]) -> SpecError:
    with pytest.raises(SpecError) as caught:
        parse_issuer_spec(spec)
    return caught.value


@dataclass
class Issuer:
    """One generated Issuer as the handler sees it: its spec, its Secret's data and its status."""

    spec: IssuerSpec
    stored: SigningKeys | None = None
    status: dict[str, Any] = field(default_factory=dict)

    def reconcile(self, now: int, published: Collection[str] = (), *, has_targets: bool = False) -> Step:
        result = step(
            now,
            self.spec,
            self.stored,
            set(published),
            status_keys=stored_public_keys(self.status),
            recorded=records_from_status(self.status),
            has_targets=has_targets,
        )
        # The handler writes the Secret first, then the status; the next reconciliation reads both back.
        self.stored = load_stored(result.secret_data(self.spec))
        self.status = {"keys": status_keys(result.records, result.public_keys, now)}
        return result

    def lose_secret(self) -> None:
        self.stored = None

    def record(self, kid: str) -> KeyRecord:
        assert self.stored is not None
        return next(r for r in self.stored.records if r.kid == kid)

    def signer_key(self, now: int) -> KeyRecord | None:
        """The key a signer mounting the current Secret would use at ``now``."""
        if self.stored is None:
            return None
        usable = [r for r in self.stored.records if r.kid in self.stored.private_keys]
        return signing_key(usable, now)


def reasons(result: Step) -> list[str]:
    return [reason for _, reason, _ in result.events]


def walk(value: Any) -> Iterator[tuple[str | None, Any]]:
    """Every (member name, value) pair anywhere in a JSON-like value."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield str(key), item
            yield from walk(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield None, item
            yield from walk(item)


# --- parse_issuer_spec ---------------------------------------------------------------------------


def test_issuer_spec_defaults_are_es256_daily_rotation_pause_and_delete() -> None:
    spec = parse_issuer_spec({"issuer": ISSUER})
    assert spec == IssuerSpec(
        issuer=ISSUER,
        algorithm="ES256",
        rsa_bits=3072,
        rotation=RotationSpec(every=86400, max_token_lifetime=3600, propagation=300, leeway=60, margin=300),
        revoked_kids=frozenset(),
        revoked_jtis=(),
        revocation_mode="Pause",
        retain_secret=False,
        external=None,
    )


@pytest.mark.parametrize("issuer", [None, "", 42, ["https://a"]])
def test_issuer_spec_without_a_usable_issuer_is_refused(issuer: Any) -> None:
    body = {} if issuer is None else {"issuer": issuer}
    assert spec_error(body).reason == "InvalidIssuer"


@pytest.mark.parametrize("algorithm", ["HS256", "none", "RS512", "es256", ""])
def test_unsupported_algorithm_is_refused(algorithm: str) -> None:
    error = spec_error({"issuer": ISSUER, "algorithm": algorithm})
    assert error.reason == "UnsupportedAlgorithm"


def test_ed25519_is_normalised_to_eddsa() -> None:
    assert issuer_spec(algorithm="Ed25519").algorithm == "EdDSA"


@pytest.mark.parametrize("bits", [2048, 3072, 4096])
def test_offered_rsa_sizes_are_accepted(bits: int) -> None:
    assert issuer_spec(algorithm="RS256", rsaKeySize=bits).rsa_bits == bits


@pytest.mark.parametrize("bits", [1024, 2047, 8192, 0, -2048])
def test_other_rsa_sizes_are_refused(bits: int) -> None:
    error = spec_error({"issuer": ISSUER, "algorithm": "RS256", "rsaKeySize": bits})
    assert error.reason == "InvalidKeySize"
    assert str(bits) in error.message


def test_non_numeric_rsa_size_is_a_spec_error_not_a_crash() -> None:
    # The handler only catches SpecError: anything else would stop the Issuer's daemon instead of
    # reporting Ready=False.
    assert spec_error({"issuer": ISSUER, "rsaKeySize": "large"}).reason == "InvalidKeySize"


@pytest.mark.parametrize("name", ["every", "maxTokenLifetime", "propagation", "leeway", "margin"])
@pytest.mark.parametrize("value", ["5d", "soon", "-5m", "1500ms", 300])
def test_each_invalid_rotation_duration_is_refused_by_name(name: str, value: Any) -> None:
    error = spec_error({"issuer": ISSUER, "rotation": {name: value}})
    assert error.reason == "InvalidDuration"
    assert f"spec.rotation.{name}" in error.message


@pytest.mark.parametrize("name", ["refreshInterval", "timeout"])
def test_each_invalid_external_duration_is_refused_by_name(name: str) -> None:
    error = spec_error({"issuer": ISSUER, "external": {"jwksURL": "https://idp.example/jwks", name: "1 min"}})
    assert error.reason == "InvalidDuration"
    assert f"spec.external.{name}" in error.message


def test_partial_rotation_section_keeps_the_other_defaults() -> None:
    spec = issuer_spec(rotation={"every": "12h", "margin": "2m"})
    assert spec.rotation == RotationSpec(every=43200, margin=120)


@pytest.mark.parametrize(
    ("rotation", "fragment"),
    [
        ({"every": "9m", "propagation": "5m", "margin": "5m"}, "propagation + margin"),
        ({"every": "0"}, "every must be positive"),
        ({"maxTokenLifetime": "0s"}, "maxTokenLifetime must be positive"),
    ],
)
def test_rotation_that_breaks_the_invariant_is_refused(rotation: dict[str, str], fragment: str) -> None:
    error = spec_error({"issuer": ISSUER, "rotation": rotation})
    assert error.reason == "InvalidRotation"
    assert fragment in error.message


def test_every_equal_to_propagation_plus_margin_is_the_smallest_accepted() -> None:
    spec = issuer_spec(rotation={"every": "10m", "propagation": "5m", "margin": "5m"})
    assert spec.rotation.every == 600


def test_revoked_tokens_are_parsed_to_epoch_seconds() -> None:
    spec = issuer_spec(
        revokedTokens=[
            {"jti": "a", "expiresAt": "2023-11-14T22:13:20Z"},
            {"jti": "b", "expiresAt": "2023-11-14T23:13:20+01:00"},
        ]
    )
    assert spec.revoked_jtis == (("a", T0), ("b", T0))


@pytest.mark.parametrize(
    "entry",
    [
        {"expiresAt": "2030-01-01T00:00:00Z"},
        {"jti": "a"},
        {"jti": "a", "expiresAt": "tomorrow"},
        {"jti": "a", "expiresAt": None},
        "a",
        None,
    ],
)
def test_malformed_revoked_token_is_refused(entry: Any) -> None:
    error = spec_error({"issuer": ISSUER, "revokedTokens": [entry]})
    assert error.reason == "InvalidRevokedToken"


def test_revoked_keys_become_a_set_of_kids() -> None:
    assert issuer_spec(revokedKeys=["a", "b", "a"]).revoked_kids == frozenset({"a", "b"})


@pytest.mark.parametrize("mode", ["Pause", "Immediate"])
def test_revocation_modes_are_accepted(mode: str) -> None:
    assert issuer_spec(revocationMode=mode).revocation_mode == mode


@pytest.mark.parametrize("mode", ["pause", "Later", "", None])
def test_unknown_revocation_mode_is_refused(mode: Any) -> None:
    assert spec_error({"issuer": ISSUER, "revocationMode": mode}).reason == "InvalidRevocationMode"


@pytest.mark.parametrize(
    ("policy", "retain"),
    [({}, False), ({"deletionPolicy": "Delete"}, False), ({"deletionPolicy": "Retain"}, True)],
)
def test_deletion_policy_retain_keeps_the_secret(policy: dict[str, str], retain: bool) -> None:
    assert issuer_spec(**policy).retain_secret is retain


@pytest.mark.parametrize(
    "external",
    [
        {},
        {"caBundle": "pem"},
        {"jwksURL": "https://idp.example/jwks", "jwks": {"keys": []}},
    ],
)
def test_external_issuer_needs_exactly_one_source(external: dict[str, Any]) -> None:
    error = spec_error({"issuer": ISSUER, "external": external})
    assert error.reason == "InvalidExternal"
    assert "exactly one" in error.message


@pytest.mark.parametrize("url", ["http://idp.example/jwks", "ftp://idp.example/jwks", "idp.example", ""])
def test_external_jwks_url_must_be_https(url: str) -> None:
    error = spec_error({"issuer": ISSUER, "external": {"jwksURL": url}})
    assert error.reason == "InvalidExternal"
    assert "https" in error.message


def test_external_url_issuer_gets_default_limits() -> None:
    spec = issuer_spec(external={"jwksURL": "https://idp.example/jwks"})
    assert spec.external is not None
    assert (spec.external.jwks_url, spec.external.inline_jwks, spec.external.ca_bundle) == (
        "https://idp.example/jwks",
        None,
        None,
    )
    assert (spec.external.refresh_interval, spec.external.timeout, spec.external.max_bytes) == (
        300,
        10,
        262144,
    )


def test_external_refresh_and_timeout_have_floors() -> None:
    spec = issuer_spec(
        external={
            "jwksURL": "https://idp.example/jwks",
            "refreshInterval": "1s",
            "timeout": "0",
            "caBundle": "",
        }
    )
    assert spec.external is not None
    assert (spec.external.refresh_interval, spec.external.timeout, spec.external.ca_bundle) == (10, 1, None)


def test_inline_external_jwks_is_kept_for_later_validation() -> None:
    jwks = {"keys": [{"kty": "OKP"}]}
    spec = issuer_spec(external={"jwks": jwks, "caBundle": "ca"})
    assert spec.external is not None
    assert (spec.external.inline_jwks, spec.external.jwks_url, spec.external.ca_bundle) == (jwks, None, "ca")


def test_secret_name_is_the_issuer_name_with_a_suffix() -> None:
    assert secret_name("billing") == "billing-signing-keys"


# --- step: a fresh issuer ------------------------------------------------------------------------


def test_fresh_issuer_without_policies_publishes_its_first_key_at_once() -> None:
    spec = issuer_spec()
    rotation = spec.rotation
    issuer = Issuer(spec)
    result = issuer.reconcile(T0)
    (record,) = result.records
    assert result.generated == [record.kid]
    assert record.created_at == T0
    assert record.published_at == T0
    assert record.activates_at == T0 + rotation.propagation + rotation.margin
    assert record.retires_at is None
    assert result.plan.active_kid is None
    assert set(result.private_keys) == set(result.public_keys) == {record.kid}
    assert result.public_keys[record.kid]["alg"] == "EdDSA"
    assert ("Normal", "KeyScheduled") in [(t, r) for t, r, _ in result.events]
    assert result.plan.wake_at == record.activates_at


def test_secret_data_holds_the_records_and_one_pem_per_key() -> None:
    spec = issuer_spec()
    result = Issuer(spec).reconcile(T0)
    data = result.secret_data(spec)
    (kid,) = result.generated
    assert set(data) == {KEYS_FILE, f"{kid}.pem"}
    document = json.loads(data[KEYS_FILE])
    assert document["issuer"] == ISSUER
    assert document["maxTokenLifetimeSeconds"] == spec.rotation.max_token_lifetime
    loaded = load_stored(data)
    assert loaded is not None
    assert loaded.records == result.records
    assert public_jwk(loaded.private_keys[kid].public_key(), "EdDSA") == result.public_keys[kid]


def test_reconciling_again_at_the_same_moment_changes_nothing() -> None:
    spec = issuer_spec()
    issuer = Issuer(spec)
    first = issuer.reconcile(T0)
    data = first.secret_data(spec)
    status = issuer.status
    again = issuer.reconcile(T0)
    assert again.generated == []
    assert again.events == []
    assert again.secret_data(spec) == data
    assert issuer.status == status


def test_key_waits_for_every_policy_to_publish_it_before_it_is_scheduled() -> None:
    issuer = Issuer(issuer_spec())
    rotation = issuer.spec.rotation
    first = issuer.reconcile(T0, published=(), has_targets=True)
    (kid,) = first.generated
    (record,) = first.records
    assert (record.published_at, record.activates_at) == (None, None)
    assert key_state(record, T0) == "pending"
    assert "KeyScheduled" not in reasons(first)
    assert first.plan.wake_at is None

    # Policies that report other kids do not count, and no second key is made while one waits.
    waiting = issuer.reconcile(T0 + 30, published={"someone-else"}, has_targets=True)
    assert waiting.generated == []
    assert [r.published_at for r in waiting.records] == [None]

    published = issuer.reconcile(T0 + 60, published={kid}, has_targets=True)
    (record,) = published.records
    assert record.published_at == T0 + 60
    assert record.activates_at == T0 + 60 + rotation.propagation + rotation.margin
    assert published.events == [
        ("Normal", "KeyScheduled", f"key {kid} activates at 2023-11-14T22:24:20Z"),
    ]


def test_status_keys_of_a_pending_key_already_carry_its_public_key() -> None:
    # Policies publish from status.keys, so the key must be there before it is published.
    issuer = Issuer(issuer_spec())
    (kid,) = issuer.reconcile(T0, has_targets=True).generated
    (entry,) = issuer.status["keys"]
    assert entry["state"] == "pending"
    assert entry["publicKey"]["kid"] == kid
    assert stored_public_keys(issuer.status) == {kid: entry["publicKey"]}


# --- step: a simulated timeline ------------------------------------------------------------------


@dataclass
class Timeline:
    """Runs an Issuer with a policy that publishes what the status holds after ``lag`` seconds."""

    issuer: Issuer
    has_targets: bool
    lag: int
    first_in_status: dict[str, int] = field(default_factory=dict)
    first_published: dict[str, int] = field(default_factory=dict)
    counts: list[int] = field(default_factory=list)
    unsigned: list[int] = field(default_factory=list)  # moments when no key could sign

    def published(self, now: int) -> set[str]:
        return {kid for kid, seen in self.first_in_status.items() if now - seen >= self.lag}

    def reconcile(self, now: int) -> Step:
        published = self.published(now)
        for kid in published:
            self.first_published.setdefault(kid, now)
        result = self.issuer.reconcile(now, published, has_targets=self.has_targets)
        for entry in self.issuer.status["keys"]:
            self.first_in_status.setdefault(entry["kid"], now)
            if not self.has_targets:
                # Without policies a key counts as published when it is created.
                self.first_published.setdefault(entry["kid"], now)
        self.counts.append(len(result.records))
        return result

    def check_signer(self, now: int) -> KeyRecord | None:
        """The signer's key at ``now`` must have been published, with its public key, P + M earlier."""
        rotation = self.issuer.spec.rotation
        record = self.issuer.signer_key(now)
        if record is not None:
            assert record.kid in self.first_published
            assert now - self.first_published[record.kid] >= rotation.propagation + rotation.margin
            assert record.kid in stored_public_keys(self.issuer.status)
        else:
            self.unsigned.append(now)
        return record

    def run(self, start: int, steps: list[int]) -> None:
        now = start
        for gap in steps:
            self.reconcile(now)
            self.check_signer(now)
            # A signer keeps using this Secret until the next reconciliation: check just before it too.
            self.check_signer(now + gap - 1)
            now += gap


@pytest.mark.parametrize("has_targets", [False, True])
def test_timeline_reaches_three_keys_and_always_signs_with_a_long_published_key(has_targets: bool) -> None:
    timeline = Timeline(Issuer(issuer_spec(rotation=FAST_ROTATION)), has_targets=has_targets, lag=20)
    rotation = timeline.issuer.spec.rotation
    warm_up = 2 * (rotation.propagation + rotation.margin) + timeline.lag + 60
    steps = [30] * (6 * 3600 // 30)
    timeline.run(T0, steps)
    assert max(timeline.counts) == 3
    settled = timeline.counts[warm_up // 30 :]
    assert set(settled) == {2, 3}
    # After warm-up some key can always sign: a rotation never leaves a gap.
    assert [t - T0 for t in timeline.unsigned if t - T0 >= warm_up] == []
    assert len(timeline.first_in_status) >= 6  # about one key per hour


def test_timeline_with_signer_checked_at_every_moment_never_has_a_gap() -> None:
    timeline = Timeline(Issuer(issuer_spec(rotation=FAST_ROTATION)), has_targets=True, lag=45)
    rotation = timeline.issuer.spec.rotation
    now = T0
    end = T0 + 4 * 3600
    warm_up = T0 + 2 * (rotation.propagation + rotation.margin + timeline.lag) + 60
    while now < end:
        timeline.reconcile(now)
        for moment in range(now, now + 20):
            record = timeline.check_signer(moment)
            if moment >= warm_up:
                assert record is not None, f"no key signs at {moment - T0}s"
        now += 20


def test_rotation_faster_than_retirement_is_capped_at_five_keys() -> None:
    # R = P + M = 2m while a retired key lingers P + T + S + M = 12m10s: keys pile up until the cap.
    spec = issuer_spec(rotation={**FAST_ROTATION, "every": "2m"})
    timeline = Timeline(Issuer(spec), has_targets=False, lag=0)
    timeline.run(T0, [15] * (2 * 3600 // 15))
    assert max(timeline.counts) == MAX_KEYS
    assert all(count <= MAX_KEYS for count in timeline.counts)


timeline_settings = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@timeline_settings
@given(
    steps=st.lists(st.integers(min_value=1, max_value=900), min_size=20, max_size=60),
    lag=st.integers(min_value=0, max_value=300),
    has_targets=st.booleans(),
)
def test_any_reconciliation_schedule_keeps_the_key_set_bounded_and_signs_only_published_keys(
    steps: list[int], lag: int, has_targets: bool
) -> None:
    timeline = Timeline(Issuer(issuer_spec(rotation=FAST_ROTATION)), has_targets=has_targets, lag=lag)
    timeline.run(T0, steps)
    assert all(1 <= count <= MAX_KEYS for count in timeline.counts)


# --- step: revocation ----------------------------------------------------------------------------


def steady_issuer(**fields: Any) -> tuple[Issuer, int]:
    """An Issuer (no policies) whose first key has rotated once: retired, active and next keys."""
    issuer = Issuer(issuer_spec(rotation=FAST_ROTATION, **fields))
    moments = range(T0, T0 + 3600 + 600, 60)
    for moment in moments:
        issuer.reconcile(moment)
    now = moments[-1]
    assert issuer.stored is not None
    states = sorted(key_state(r, now) for r in issuer.stored.records)
    assert states == ["active", "next", "retired"]
    return issuer, now


def by_state(issuer: Issuer, now: int) -> dict[str, KeyRecord]:
    assert issuer.stored is not None
    return {key_state(r, now): r for r in issuer.stored.records}


@pytest.mark.parametrize("mode", ["Pause", "Immediate"])
def test_revoking_the_active_key_withdraws_it_and_the_next_key(mode: OnRevoke) -> None:
    issuer, now = steady_issuer()
    keys = by_state(issuer, now)
    active, following, retired = keys["active"], keys["next"], keys["retired"]
    issuer.spec = dataclasses.replace(issuer.spec, revoked_kids=frozenset({active.kid}), revocation_mode=mode)
    now += 5
    result = issuer.reconcile(now)
    (fresh,) = result.generated
    assert {r.kid for r in result.records} == {retired.kid, fresh}
    assert set(result.private_keys) == {retired.kid, fresh}
    assert set(result.public_keys) == {retired.kid, fresh}
    assert set(result.plan.removed) == {active.kid, following.kid}
    assert ("Warning", "KeyRevoked", f"key {active.kid} withdrawn") in result.events
    assert ("Normal", "KeyRemoved", f"key {following.kid} withdrawn") in result.events
    new = next(r for r in result.records if r.kid == fresh)
    rotation = issuer.spec.rotation
    if mode == "Pause":
        assert new.activates_at == now + rotation.propagation + rotation.margin
        assert result.plan.active_kid is None
        assert issuer.signer_key(now) is None
    else:
        assert new.activates_at == now
        assert result.plan.active_kid == fresh
    # The revoked key is gone from the status, so no policy can publish it any more.
    assert active.kid not in stored_public_keys(issuer.status)


def test_immediate_revocation_with_policies_activates_the_fresh_key_at_publication() -> None:
    issuer, now = steady_issuer(revocationMode="Immediate")
    active = by_state(issuer, now)["active"]
    issuer.spec = dataclasses.replace(issuer.spec, revoked_kids=frozenset({active.kid}))
    (fresh,) = issuer.reconcile(now + 5, has_targets=True).generated
    assert issuer.record(fresh).activates_at is None
    result = issuer.reconcile(now + 40, {fresh}, has_targets=True)
    assert result.plan.active_kid == fresh
    assert issuer.record(fresh).activates_at == now + 40


def test_revoking_a_retired_key_leaves_the_active_and_next_keys_alone() -> None:
    issuer, now = steady_issuer()
    keys = by_state(issuer, now)
    issuer.spec = dataclasses.replace(issuer.spec, revoked_kids=frozenset({keys["retired"].kid}))
    result = issuer.reconcile(now + 5)
    assert result.generated == []
    assert set(result.records) == {keys["active"], keys["next"]}
    assert reasons(result) == ["KeyRevoked"]


def test_revoking_the_next_key_just_before_it_activates_leaves_no_signing_gap() -> None:
    # Revoking a key that never signed is not an emergency: the active key must keep signing until a
    # replacement has been published for P + M.
    issuer, now = steady_issuer()
    following = by_state(issuer, now)["next"]
    assert following.activates_at is not None
    now = following.activates_at - 30
    issuer.reconcile(now)
    issuer.spec = dataclasses.replace(issuer.spec, revoked_kids=frozenset({following.kid}))
    issuer.reconcile(now)
    gaps = []
    for moment in range(now, now + 900, 10):
        issuer.reconcile(moment)
        if issuer.signer_key(moment) is None:
            gaps.append(moment - now)
    assert gaps == []


# --- step: a lost Secret -------------------------------------------------------------------------


def test_lost_secret_retires_the_active_key_now_and_keeps_it_published_for_stale_copies() -> None:
    issuer, now = steady_issuer()
    keys = by_state(issuer, now)
    active, following, retired = keys["active"], keys["next"], keys["retired"]
    rotation = issuer.spec.rotation
    p, m, t, s = rotation.propagation, rotation.margin, rotation.max_token_lifetime, rotation.leeway
    issuer.lose_secret()
    now += 7
    result = issuer.reconcile(now)

    lost = next(r for r in result.records if r.kid == active.kid)
    assert lost.retires_at == now
    # Its retirement was in every copy of the old Secret: the removal scheduled with it still holds.
    assert lost.remove_at == active.remove_at
    assert active.retires_at is not None
    assert lost.remove_at == active.retires_at + p + t + s + m
    # The next key activates an hour from now: no copy of the old Secret lives that long.
    assert following.activates_at is not None
    assert following.activates_at > now + p + m
    assert following.kid not in {r.kid for r in result.records}
    assert next(r for r in result.records if r.kid == retired.kid) == retired
    (fresh,) = result.generated
    assert set(result.private_keys) == {fresh}
    assert set(result.public_keys) == {active.kid, retired.kid, fresh}
    new = next(r for r in result.records if r.kid == fresh)
    assert new.activates_at is not None
    assert new.activates_at >= now + p + m
    assert result.plan.active_kid is None
    assert issuer.signer_key(now) is None
    assert reasons(result).count("KeyLost") == 2
    assert (
        "Warning",
        "KeyLost",
        f"key {active.kid} has no private key in the Secret: it stops signing now and stays published "
        f"until {iso(lost.remove_at)}, for the tokens already signed with it",
    ) in result.events
    assert (
        "Warning",
        "KeyLost",
        f"key {following.kid} has no private key and never signed: withdrawn",
    ) in result.events

    # Published (in the status) until its removal time, then withdrawn.
    for moment in range(now + 60, lost.remove_at, 300):
        issuer.reconcile(moment)
        assert active.kid in stored_public_keys(issuer.status)
    issuer.reconcile(lost.remove_at)
    assert active.kid not in stored_public_keys(issuer.status)


@pytest.mark.parametrize("before_activation", [1, 30, 59, 60])
def test_lost_secret_shortly_before_the_next_key_activates_keeps_it_published_for_stale_signers(
    before_activation: int,
) -> None:
    """Stale copies of a deleted Secret activate its next key on their own schedule: it must verify."""
    issuer, now = steady_issuer()
    rotation = issuer.spec.rotation
    following = by_state(issuer, now)["next"]
    assert following.activates_at is not None
    for moment in range(now + 60, following.activates_at - before_activation, 60):
        issuer.reconcile(moment)
    assert issuer.stored is not None
    old_copy = [r for r in issuer.stored.records if r.kid in issuer.stored.private_keys]
    lost_at = following.activates_at - before_activation
    issuer.lose_secret()
    result = issuer.reconcile(lost_at)
    assert following.kid in result.plan.lost
    assert following.kid not in result.private_keys

    # Reconcile every 10 s; a signer holding the old Secret up to P after the recovery signs with
    # whatever that copy's schedule says, and every token it mints must stay verifiable until it expires.
    last_token_valid_until: dict[str, int] = {}
    for minted in range(lost_at, lost_at + rotation.propagation + 1):
        key = signing_key(old_copy, minted)
        if key is not None:
            last_token_valid_until[key.kid] = minted + rotation.max_token_lifetime + rotation.leeway
    assert following.kid in last_token_valid_until
    horizon = max(last_token_valid_until.values())
    for moment in range(lost_at + 10, horizon + 1, 10):
        issuer.reconcile(moment)
        published = stored_public_keys(issuer.status)
        for kid, valid_until in last_token_valid_until.items():
            if moment <= valid_until:
                assert kid in published, f"{kid} withdrawn at {moment - lost_at}s while its tokens live"


def test_secret_replaced_by_an_older_copy_treats_the_keys_it_lacks_as_lost() -> None:
    issuer = Issuer(issuer_spec(rotation=FAST_ROTATION))
    issuer.reconcile(T0)
    backup = issuer.stored
    issuer, now = steady_issuer()
    active = by_state(issuer, now)["active"]
    # Someone restores last week's backup over the Secret: its keys.json knows none of today's keys.
    issuer.stored = backup
    result = issuer.reconcile(now + 5)
    assert active.kid in result.plan.lost
    assert active.kid in result.public_keys
    assert active.kid not in result.private_keys
    assert next(r for r in result.records if r.kid == active.kid).retires_at == now + 5


def test_lost_secret_does_not_report_the_same_loss_twice() -> None:
    issuer, now = steady_issuer()
    issuer.lose_secret()
    issuer.reconcile(now + 1)
    again = issuer.reconcile(now + 2)
    assert "KeyLost" not in reasons(again)


def test_lost_secret_with_policies_waits_for_publication_of_the_fresh_key() -> None:
    issuer, now = steady_issuer()
    rotation = issuer.spec.rotation
    issuer.lose_secret()
    (fresh,) = issuer.reconcile(now + 1, has_targets=True).generated
    assert issuer.record(fresh).published_at is None
    issuer.reconcile(now + 100, {fresh}, has_targets=True)
    assert issuer.record(fresh).activates_at == now + 100 + rotation.propagation + rotation.margin


def test_lost_secret_keeps_an_unscheduled_key_because_the_status_may_lag_the_secret() -> None:
    # The handler writes the Secret before the status: after a crash between the two, the status
    # can show a key as pending that the lost Secret (and its stale copies) had already scheduled.
    issuer = Issuer(issuer_spec(rotation=FAST_ROTATION))
    (pending,) = issuer.reconcile(T0, has_targets=True).generated
    issuer.lose_secret()
    result = issuer.reconcile(T0 + 10, has_targets=True)
    record = next(r for r in result.records if r.kid == pending)
    rotation = issuer.spec.rotation
    assert record.retires_at == T0 + 10
    assert record.remove_at == T0 + 10 + 2 * (rotation.propagation + rotation.margin) + (
        rotation.max_token_lifetime + rotation.leeway
    )
    assert pending in stored_public_keys(issuer.status)
    assert pending not in result.private_keys
    assert len(result.generated) == 1
    assert "KeyLost" in reasons(result)


def test_secret_missing_one_private_key_retires_only_that_key() -> None:
    issuer, now = steady_issuer()
    assert issuer.stored is not None
    active = by_state(issuer, now)["active"]
    data = render_secret_data(
        issuer=ISSUER,
        max_token_lifetime=issuer.spec.rotation.max_token_lifetime,
        records=issuer.stored.records,
        private_keys={k: v for k, v in issuer.stored.private_keys.items() if k != active.kid},
    )
    issuer.stored = load_stored(data)
    result = issuer.reconcile(now + 3)
    assert next(r for r in result.records if r.kid == active.kid).retires_at == now + 3
    assert active.kid in result.public_keys
    assert active.kid not in result.private_keys
    assert "KeyLost" in reasons(result)


def test_lost_secret_fresh_key_waits_p_plus_m_even_after_an_old_immediate_revocation() -> None:
    # revokedKeys stays in the spec long after the revoked key is gone; Immediate is the answer to that
    # revocation only, not to a Secret lost days later (whose keys were never compromised).
    issuer, now = steady_issuer(revocationMode="Immediate", revokedKeys=["kid-revoked-last-year"])
    rotation = issuer.spec.rotation
    issuer.lose_secret()
    result = issuer.reconcile(now + 1)
    (fresh,) = result.generated
    record = next(r for r in result.records if r.kid == fresh)
    assert record.activates_at is not None
    assert record.activates_at >= now + 1 + rotation.propagation + rotation.margin


# --- status and Secret round trips ---------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["EdDSA", "ES256", "ES384", "RS256"])
def test_status_keys_never_carry_private_key_material(algorithm: str) -> None:
    extra = {"rsaKeySize": 2048} if algorithm == "RS256" else {}
    issuer = Issuer(issuer_spec(algorithm=algorithm, **extra))
    result = issuer.reconcile(T0)
    serialised = json.dumps(issuer.status)
    assert "PRIVATE KEY" not in serialised
    assert "BEGIN" not in serialised
    private_members = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}
    assert not [name for name, _ in walk(issuer.status) if name in private_members]
    # The PEM really is in the Secret, so the scan above would have found it had it leaked.
    (kid,) = result.generated
    pem = result.secret_data(issuer.spec)[f"{kid}.pem"].decode()
    assert "PRIVATE KEY" in pem
    body = "".join(line for line in pem.splitlines() if "-----" not in line)
    assert body[:40] not in serialised


def test_status_keys_lists_records_oldest_first_with_only_the_timestamps_set() -> None:
    issuer, _ = steady_issuer()
    keys = issuer.status["keys"]
    assert [entry["state"] for entry in keys] == ["retired", "active", "next"]
    retired, active, following = keys
    assert set(retired) == {
        "kid",
        "alg",
        "state",
        "createdAt",
        "publicKey",
        "publishedAt",
        "activatesAt",
        "retiresAt",
        "removeAt",
    }
    assert set(following) == {"kid", "alg", "state", "createdAt", "publicKey", "publishedAt", "activatesAt"}
    assert following["publicKey"]["kid"] == following["kid"]
    assert active["retiresAt"] == following["activatesAt"]
    assert retired["createdAt"].endswith("Z")


def test_status_keys_skip_records_without_a_public_key() -> None:
    records = [KeyRecord("a", "ES256", T0), KeyRecord("b", "ES256", T0 + 1)]
    jwk = {"kid": "b", "kty": "EC"}
    assert [e["kid"] for e in status_keys(records, {"b": jwk}, T0)] == ["b"]


def test_records_round_trip_through_status_keys() -> None:
    issuer, _ = steady_issuer()
    assert issuer.stored is not None
    assert records_from_status(issuer.status) == sorted(
        issuer.stored.records, key=lambda r: (r.created_at, r.kid)
    )


def test_records_from_status_skips_external_and_malformed_entries() -> None:
    good = {"kid": "a", "alg": "ES256", "createdAt": "2023-11-14T22:13:20Z", "activatesAt": None}
    status = {
        "keys": [
            {"kid": "x", "state": "external", "publicKey": {"kid": "x"}},
            {"kid": "b", "alg": "ES256"},
            {"kid": "c", "alg": "ES256", "createdAt": "yesterday"},
            "not an object",
            good,
        ]
    }
    assert records_from_status(status) == [KeyRecord("a", "ES256", T0)]
    assert records_from_status({}) == []


def test_stored_public_keys_ignores_entries_without_a_kid() -> None:
    status = {
        "keys": [
            {"publicKey": {"kid": "a", "kty": "OKP", "x": "abc"}},
            {"publicKey": {"kty": "OKP"}},
            {"publicKey": "nope"},
            "nope",
        ]
    }
    assert stored_public_keys(status) == {"a": {"kid": "a", "kty": "OKP", "x": "abc"}}
    assert stored_public_keys({"keys": None}) == {}


@pytest.mark.parametrize("data", [None, {}])
def test_absent_secret_loads_as_none(data: dict[str, bytes] | None) -> None:
    assert load_stored(data) is None


@pytest.mark.parametrize(
    "data",
    [
        {KEYS_FILE: b"{not json"},
        {KEYS_FILE: b'{"keys": [{"kid": "a"}], "issuer": "x", "maxTokenLifetimeSeconds": 1}'},
        {"other": b"x"},
        {
            KEYS_FILE: json.dumps(
                {
                    "issuer": "x",
                    "maxTokenLifetimeSeconds": 60,
                    "keys": [{"kid": "a", "alg": "ES256", "createdAt": 1}],
                }
            ).encode(),
            "a.pem": b"-----BEGIN PRIVATE KEY-----\nc2VjcmV0LXZhbHVl\n-----END PRIVATE KEY-----\n",
        },
    ],
)
def test_corrupt_secret_is_a_spec_error_that_does_not_echo_its_content(data: dict[str, bytes]) -> None:
    # The handler reports CorruptSecret (Ready=False, Secret untouched) only for a SpecError; anything
    # else escapes the reconciliation.
    with pytest.raises(SpecError) as caught:
        load_stored(data)
    assert caught.value.reason == "CorruptSecret"
    assert "c2VjcmV0LXZhbHVl" not in caught.value.message


# --- parse_external_jwks -------------------------------------------------------------------------


def jwk_for(alg: str) -> dict[str, str]:
    return public_jwk(generate_private_key(alg, rsa_bits=2048).public_key(), alg)


EC_JWK = jwk_for("ES256")
OKP_JWK = jwk_for("EdDSA")
RSA_JWK = jwk_for("RS256")


def test_valid_external_set_of_each_key_type_is_accepted_as_is() -> None:
    mirrored = parse_external_jwks({"keys": [EC_JWK, RSA_JWK, OKP_JWK]})
    assert mirrored.keys == (EC_JWK, RSA_JWK, OKP_JWK)
    assert mirrored.warnings == ()


def test_external_key_without_kid_gets_its_thumbprint() -> None:
    bare = {k: v for k, v in EC_JWK.items() if k not in ("kid", "alg", "use")}
    (key,) = parse_external_jwks({"keys": [bare]}).keys
    assert key["kid"] == thumbprint(bare) == EC_JWK["kid"]


def test_external_key_keeps_its_own_kid() -> None:
    (key,) = parse_external_jwks({"keys": [{**OKP_JWK, "kid": "provider-1"}]}).keys
    assert key["kid"] == "provider-1"


def test_external_set_may_be_raw_json_bytes() -> None:
    raw = json.dumps({"keys": [RSA_JWK]}).encode()
    assert parse_external_jwks(raw).keys == (RSA_JWK,)


def test_non_string_members_are_left_out_of_published_keys() -> None:
    (key,) = parse_external_jwks({"keys": [{**EC_JWK, "x5c": ["MIIB"], "ext": True}]}).keys
    assert key == EC_JWK


@pytest.mark.parametrize("member", ["d", "p", "q", "dp", "dq", "qi", "oth", "k"])
def test_external_set_with_a_private_member_is_refused_whole(member: str) -> None:
    leaky = {**RSA_JWK, member: "c2VjcmV0LXZhbHVl"}
    with pytest.raises(SpecError) as caught:
        parse_external_jwks({"keys": [EC_JWK, leaky]})
    assert caught.value.reason == "InvalidJWKS"
    assert "#1" in caught.value.message
    assert "c2VjcmV0LXZhbHVl" not in caught.value.message


def test_private_member_is_refused_even_on_an_encryption_key() -> None:
    with pytest.raises(SpecError, match="private"):
        parse_external_jwks({"keys": [EC_JWK, {**EC_JWK, "use": "enc", "d": "c2VjcmV0"}]})


@pytest.mark.parametrize(
    "jwk",
    [
        {"kty": "oct", "k": "c2VjcmV0LXZhbHVl", "alg": "HS256"},
        {"kty": "oct", "alg": "HS256"},
    ],
)
def test_symmetric_keys_are_refused(jwk: dict[str, str]) -> None:
    with pytest.raises(SpecError) as caught:
        parse_external_jwks({"keys": [EC_JWK, jwk]})
    assert caught.value.reason == "InvalidJWKS"


def test_encryption_keys_are_skipped() -> None:
    assert parse_external_jwks({"keys": [{**RSA_JWK, "use": "enc"}, OKP_JWK]}) == ExternalJWKS(
        keys=(OKP_JWK,)
    )


def test_set_with_only_encryption_keys_has_no_usable_keys() -> None:
    with pytest.raises(SpecError, match="no usable"):
        parse_external_jwks({"keys": [{**RSA_JWK, "use": "enc"}]})


def test_empty_set_has_no_usable_keys() -> None:
    with pytest.raises(SpecError, match="no usable"):
        parse_external_jwks({"keys": []})


def test_too_many_keys_are_refused() -> None:
    assert len(parse_external_jwks({"keys": [EC_JWK] * MAX_EXTERNAL_KEYS}).keys) == MAX_EXTERNAL_KEYS
    with pytest.raises(SpecError, match="at most 64"):
        parse_external_jwks({"keys": [EC_JWK] * (MAX_EXTERNAL_KEYS + 1)})
    with pytest.raises(SpecError, match="at most 2"):
        parse_external_jwks({"keys": [EC_JWK] * 3}, max_keys=2)


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"{", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[]", "'keys' array"),
        (b'{"keys": {}}', "'keys' array"),
        (b'{"other": []}', "'keys' array"),
        (b'{"keys": ["x"]}', "not an object"),
        (b'{"keys": [{"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}]}', "not a usable public key"),
        (b'{"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB"}]}', "not a usable public key"),
    ],
)
def test_malformed_external_sets_are_refused(raw: bytes, fragment: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_external_jwks(raw)
    assert caught.value.reason == "InvalidJWKS"
    assert fragment in caught.value.message


# --- step: switching between generated and external keys ------------------------------------------


def test_switching_from_external_to_generated_keeps_the_providers_keys_until_its_tokens_expire() -> None:
    provider = [public_jwk(generate_private_key("ES256").public_key(), "ES256") for _ in range(2)]
    status = {
        "keys": [{"kid": j["kid"], "alg": "ES256", "state": "external", "publicKey": j} for j in provider]
    }
    issuer = Issuer(issuer_spec(rotation=FAST_ROTATION), status=status)
    rotation = issuer.spec.rotation
    now = T0
    result = step(
        now,
        issuer.spec,
        None,
        set(),
        status_keys=stored_public_keys(status),
        recorded=records_from_status(status, external_at=now),
        has_targets=False,
    )
    mirrored = {j["kid"] for j in provider}
    assert mirrored <= set(result.plan.lost)
    assert mirrored <= set(result.public_keys)
    assert not mirrored & set(result.private_keys)
    (fresh,) = result.generated
    last_token = now + rotation.propagation + rotation.margin + rotation.max_token_lifetime + rotation.leeway
    for kid in mirrored:
        record = next(r for r in result.records if r.kid == kid)
        assert record.retires_at == now
        assert record.remove_at is not None
        assert record.remove_at > last_token
    # Without external_at the provider's keys have no record at all (the mirroring path's reading).
    assert records_from_status(status) == []
    # The records survive the Secret round trip: the next reconciliation sees them as ordinary keys.
    issuer.stored = load_stored(result.secret_data(issuer.spec))
    issuer.status = {"keys": status_keys(result.records, result.public_keys, now)}
    again = issuer.reconcile(now + 60)
    assert mirrored <= set(again.public_keys)
    assert fresh in again.private_keys
    assert "KeyLost" not in reasons(again)


def test_winding_down_for_an_external_jwks_strips_private_keys_and_keeps_signed_keys_published() -> None:
    issuer, now = steady_issuer()
    assert issuer.stored is not None
    keys = by_state(issuer, now)
    active, following, retired = keys["active"], keys["next"], keys["retired"]
    stripped = dataclasses.replace(issuer.stored, private_keys={})
    result = step(
        now + 1,
        issuer.spec,
        stripped,
        (),
        status_keys=stored_public_keys(issuer.status),
        recorded=records_from_status(issuer.status),
        generate_keys=False,
    )
    assert result.generated == []
    assert result.private_keys == {}
    data = result.secret_data(issuer.spec)
    assert set(data) == {KEYS_FILE}
    assert {r.kid for r in result.records} == {active.kid, retired.kid}
    assert following.kid in result.plan.never_signed
    assert next(r for r in result.records if r.kid == active.kid).remove_at == active.remove_at
    assert set(result.public_keys) == {active.kid, retired.kid}
    # A signer that mounts the written Secret has nothing to sign with.
    written = load_stored(data)
    assert written is not None
    assert signing_key([r for r in written.records if r.kid in written.private_keys], now + 1) is None


# --- parse_external_jwks: every algorithm, and what is skipped rather than refused ------------------


@pytest.mark.parametrize("alg", ["ES512", "PS384", "PS512", "RS384", "RS512", "Ed25519"])
def test_external_keys_of_every_algorithm_are_mirrored(alg: str) -> None:
    jwk = jwk_for(alg)
    assert parse_external_jwks({"keys": [jwk, EC_JWK]}) == ExternalJWKS(keys=(jwk, EC_JWK))


def _x(raw: bytes) -> str:
    return b64url_encode(raw)


@pytest.mark.parametrize(
    ("jwk", "reason"),
    [
        ({"kty": "EC", "crv": "secp256k1", "x": _x(bytes(32)), "y": _x(bytes(32))}, "crv"),
        ({"kty": "OKP", "crv": "Ed448", "x": _x(bytes(57))}, "Ed25519"),
        ({"kty": "OKP", "crv": "X25519", "x": _x(bytes(32))}, "Ed25519"),
        ({**EC_JWK, "alg": "ES256K"}, "algorithm 'ES256K' is not one we verify"),
        ({**RSA_JWK, "alg": "RSA-OAEP"}, "algorithm 'RSA-OAEP' is not one we verify"),
        ({**RSA_JWK, "alg": ["RS256"]}, "algorithm that is not a string"),
        ({**jwk_for("ES384"), "alg": "ES256"}, "does not fit its algorithm ES256"),
        ({**RSA_JWK, "alg": "ES512"}, "does not fit its algorithm ES512"),
        ({**RSA_JWK, "e": "Aw"}, "exponent"),
        ({"kty": "OKP", "crv": "Ed25519", "x": _x(b"\x01" + bytes(31))}, "small order"),
        ({"kty": "EC", "crv": "P-521", "x": _x(bytes(66)), "y": _x(bytes(66))}, "not on P-521"),
    ],
    ids=[
        "secp256k1",
        "ed448",
        "x25519",
        "alg-es256k",
        "alg-rsa-oaep",
        "alg-not-a-string",
        "p384-named-es256",
        "rsa-named-es512",
        "exponent-3",
        "ed25519-identity",
        "off-curve-p521",
    ],
)
def test_a_key_we_cannot_verify_is_skipped_and_reported_not_fatal(jwk: dict[str, Any], reason: str) -> None:
    mirrored = parse_external_jwks({"keys": [OKP_JWK, {**jwk, "kid": "odd"}, RSA_JWK]})
    assert mirrored.keys == (OKP_JWK, RSA_JWK)
    (warning,) = mirrored.warnings
    assert warning.startswith("JWKS key #1 (kid 'odd') skipped: ")
    assert reason in warning
    # Alone, it leaves nothing usable: the set is refused, and the message says why.
    with pytest.raises(SpecError, match="no usable signature keys") as caught:
        parse_external_jwks({"keys": [jwk]})
    assert reason in caught.value.message


def test_a_roca_key_in_an_external_set_is_skipped() -> None:
    import vectors

    roca = public_jwk(vectors.roca_private_key().public_key(), "RS256")
    mirrored = parse_external_jwks({"keys": [roca, EC_JWK]})
    assert mirrored.keys == (EC_JWK,)
    assert "ROCA" in mirrored.warnings[0]


def test_a_kid_naming_two_different_keys_is_left_out_and_reported() -> None:
    first, second = {**EC_JWK, "kid": "same"}, {**OKP_JWK, "kid": "same"}
    mirrored = parse_external_jwks({"keys": [first, RSA_JWK, second]})
    assert mirrored.keys == (RSA_JWK,)
    assert mirrored.warnings == ("JWKS kid 'same' names 2 different keys; none of them is mirrored",)
    # A key without kid gets its thumbprint; another key claiming that kid makes it ambiguous too.
    bare = {k: v for k, v in EC_JWK.items() if k != "kid"}
    impostor = {**OKP_JWK, "kid": EC_JWK["kid"]}
    assert parse_external_jwks({"keys": [bare, impostor, RSA_JWK]}).keys == (RSA_JWK,)
    with pytest.raises(SpecError, match="names 2 different keys"):
        parse_external_jwks({"keys": [first, second]})


def test_one_key_published_under_one_kid_for_two_algorithms_is_mirrored() -> None:
    as_ps = {**RSA_JWK, "alg": "PS256"}
    assert parse_external_jwks({"keys": [RSA_JWK, as_ps]}) == ExternalJWKS(keys=(RSA_JWK, as_ps))


def test_private_or_symmetric_material_still_refuses_the_whole_set_among_skippable_keys() -> None:
    skippable = {**EC_JWK, "alg": "ES256K"}
    secrets = ({**RSA_JWK, "d": "c2VjcmV0"}, {"kty": "oct", "alg": "HS256"}, {"kty": "oct", "k": "c2VjcmV0"})
    for secret in secrets:
        with pytest.raises(SpecError, match="private or symmetric"):
            parse_external_jwks({"keys": [skippable, EC_JWK, secret]})


def test_the_issuer_crd_offers_exactly_the_generated_algorithms_and_the_policy_crd_every_one() -> None:
    import yaml

    from jwt_trust.algorithms import ALGORITHMS
    from jwt_trust.kube.issuers import GENERATED_ALGORITHMS

    root = Path(__file__).resolve().parents[2] / "crds"
    issuer = yaml.safe_load((root / "issuers.jwt-trust.dev.yaml").read_text())
    spec = issuer["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert set(spec["properties"]["algorithm"]["enum"]) == {*GENERATED_ALGORITHMS, "Ed25519"}
    policy = yaml.safe_load((root / "trustpolicies.jwt-trust.dev.yaml").read_text())
    verification = policy["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    algorithms = verification["properties"]["verification"]["properties"]["algorithms"]
    assert set(algorithms["items"]["enum"]) == set(ALGORITHMS)
    assert algorithms["maxItems"] >= len(ALGORITHMS)
    for alg in GENERATED_ALGORITHMS:
        assert issuer_spec(algorithm=alg).algorithm == alg


def test_an_es512_issuer_generates_a_p521_key() -> None:
    spec = parse_issuer_spec({"issuer": ISSUER, "algorithm": "ES512"})
    result = step(T0, spec, None, (), has_targets=False)
    (jwk,) = result.public_keys.values()
    assert (jwk["alg"], jwk["crv"]) == ("ES512", "P-521")
