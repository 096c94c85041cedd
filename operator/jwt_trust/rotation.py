"""The key rotation plan: a pure function from (now, persisted key records, spec) to the desired keys.

It exists so that the one rule the whole product rests on lives in one small place that
can be property-tested without a cluster: every token minted by a signer whose copy of the Secret is at
most P old verifies, until ``exp + leeway``, against every verifier copy of the JWKS that is at most P old.

How the plan guarantees it:

* a key activates no earlier than ``P + M`` after it was published everywhere (``published_at``), so
  every verifier copy has it before any token signed with it exists;
* every timestamp that changes what a signer does (``activates_at``, ``retires_at``) is written at least
  ``P + M`` before it is reached, so a signer's stale copy of the Secret never matters;
* a retired key stays published for ``P + T + S + M`` after it retires;
* timestamps are only ever filled in (``None`` → value), never moved, and are computed from
  ``max(now, latest event already recorded)`` so a clock stepping backwards cannot pull them earlier;
* stale copies of the Secret are signers too: when a private key is lost (the Secret deleted by hand,
  replaced, or abandoned), every copy of the old Secret up to P old still signs with it on the schedule
  that copy holds. Such a key stays published until no copy can sign with it any more and the last
  token it signed has expired (:func:`_withdraw_lost`).

The module has no I/O and reads no clock: the caller passes ``now``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

KeyState = Literal["pending", "next", "active", "retired"]
KEY_STATES: tuple[KeyState, ...] = ("pending", "next", "active", "retired")
OnRevoke = Literal["Immediate", "Pause"]

MAX_KEYS = 5
"""Never more keys than this are kept (and so published); steady state is 3."""

_UNITS = {"h": 3600, "m": 60, "s": 1}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|h|m|s)")


def parse_duration(text: str) -> int:
    """Parse a Go-style duration (``90s``, ``5m``, ``1h30m``) into whole seconds.

    Sub-second units are accepted only when the total is a whole number of seconds (``1500ms`` is
    refused, ``2000ms`` is 2). Negative durations, bare numbers and unknown units are refused.
    """
    if not isinstance(text, str):
        raise ValueError(f"duration must be a string, not {type(text).__name__}")
    s = text.strip()
    if not s:
        raise ValueError("empty duration")
    if s == "0":
        return 0
    pos = 0
    total_ns = 0
    sub_ns = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000}
    while pos < len(s):
        match = _DURATION_PART.match(s, pos)
        if match is None:
            raise ValueError(f"invalid duration {text!r}: expected e.g. '90s', '5m', '1h30m'")
        number, unit = match.group(1), match.group(2)
        scale = _UNITS[unit] * 1_000_000_000 if unit in _UNITS else sub_ns[unit]
        whole, _, frac = number.partition(".")
        part = int(whole) * scale
        if frac:
            part += int(frac) * scale // (10 ** len(frac))
            if int(frac) * scale % (10 ** len(frac)):
                raise ValueError(f"invalid duration {text!r}: finer than a nanosecond")
        total_ns += part
        pos = match.end()
    if total_ns % 1_000_000_000:
        raise ValueError(f"invalid duration {text!r}: must be a whole number of seconds")
    return total_ns // 1_000_000_000


def format_duration(seconds: int) -> str:
    """Format seconds the way Go prints a duration, without zero parts: 5400 → ``1h30m``, 0 → ``0s``."""
    if seconds < 0:
        raise ValueError("duration must not be negative")
    if seconds == 0:
        return "0s"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{value}{unit}" for value, unit in ((hours, "h"), (minutes, "m"), (secs, "s")) if value]
    return "".join(parts)


@dataclass(frozen=True)
class RotationSpec:
    """The rotation parameters in seconds: R (every), T, P, S, and the margin M."""

    every: int = 86400
    max_token_lifetime: int = 3600
    propagation: int = 300
    leeway: int = 60
    margin: int = 300

    def problems(self) -> list[str]:
        """Human-readable reasons this spec breaks the invariant; empty when it is fine."""
        found: list[str] = []
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value < 0:
                found.append(f"{field.name} must not be negative (got {value})")
        if self.every <= 0:
            found.append("rotation.every must be positive")
        if self.max_token_lifetime <= 0:
            found.append("rotation.maxTokenLifetime must be positive")
        if self.every < self.propagation + self.margin:
            found.append(
                f"rotation.every ({format_duration(max(self.every, 0))}) must be at least propagation + "
                f"margin ({format_duration(max(self.propagation + self.margin, 0))}): a key must reach "
                "every copy before it signs"
            )
        return found


@dataclass(frozen=True)
class KeyRecord:
    """What the operator persists about one key (never the key material itself). Times are epoch seconds."""

    kid: str
    alg: str
    created_at: int
    published_at: int | None = None
    activates_at: int | None = None
    retires_at: int | None = None
    remove_at: int | None = None
    # Set on the fresh key that replaces a revoked active key under revocationMode Immediate: it signs
    # as soon as it is published (its tokens may fail for up to P), instead of P + M later.
    activate_on_publish: bool = False

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "kid": self.kid,
            "alg": self.alg,
            "createdAt": self.created_at,
            "publishedAt": self.published_at,
            "activatesAt": self.activates_at,
            "retiresAt": self.retires_at,
            "removeAt": self.remove_at,
        }
        if self.activate_on_publish:
            document["activateOnPublish"] = True
        return document

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> KeyRecord:
        def optional_int(key: str) -> int | None:
            value = d.get(key)
            if value is None:
                return None
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"key record field {key} must be an integer")
            return value

        kid, alg, created = d.get("kid"), d.get("alg"), optional_int("createdAt")
        if not isinstance(kid, str) or not kid or not isinstance(alg, str) or not alg or created is None:
            raise ValueError("key record needs a kid, an alg and createdAt")
        return cls(
            kid=kid,
            alg=alg,
            created_at=created,
            published_at=optional_int("publishedAt"),
            activates_at=optional_int("activatesAt"),
            retires_at=optional_int("retiresAt"),
            remove_at=optional_int("removeAt"),
            activate_on_publish=d.get("activateOnPublish") is True,
        )


@dataclass(frozen=True)
class Plan:
    """What the operator must make true. ``generate``: create one key and plan again.

    ``immediate``: the key to generate replaces a revoked active key under ``Immediate``; create it with
    ``activate_on_publish=True``.
    """

    keys: tuple[KeyRecord, ...]
    generate: bool
    wake_at: int | None
    active_kid: str | None
    removed: tuple[str, ...]
    immediate: bool = False
    # Keys whose private part was lost in this step: kept published for the stale copies of the
    # Secret (``lost``), or withdrawn because no copy ever signs with them (``never_signed``, also in
    # ``removed``).
    lost: tuple[str, ...] = ()
    never_signed: tuple[str, ...] = ()


def key_state(record: KeyRecord, now: int) -> KeyState:
    if record.retires_at is not None and record.retires_at <= now:
        return "retired"
    if record.published_at is None:
        return "pending"
    if record.activates_at is None or record.activates_at > now:
        return "next"
    return "active"


def signing_key(records: Iterable[KeyRecord], now: int) -> KeyRecord | None:
    """The key a signer must use at ``now``: the newest activated, not retired one (or None: don't sign)."""
    best: KeyRecord | None = None
    for record in records:
        if record.activates_at is None or record.activates_at > now:
            continue
        if record.retires_at is not None and record.retires_at <= now:
            continue
        if best is None or record.activates_at > best.activates_at:  # type: ignore[operator]
            best = record
    return best


def mark_published(records: Iterable[KeyRecord], kids: Collection[str], at: int) -> tuple[KeyRecord, ...]:
    """Record that ``kids`` reached every target at ``at`` (only where no publication was recorded)."""
    return tuple(
        dataclasses.replace(r, published_at=max(at, r.created_at))
        if r.kid in kids and r.published_at is None
        else r
        for r in records
    )


def _earliest_activation(published_at: int, base: int, spec: RotationSpec) -> int:
    # Module-level so the property tests can replace it with a broken variant and watch them fail.
    return max(published_at, base) + spec.propagation + spec.margin


def _removal_time(retires_at: int, spec: RotationSpec) -> int:
    return retires_at + spec.propagation + spec.max_token_lifetime + spec.leeway + spec.margin


def _last_stale_signature(now: int, spec: RotationSpec) -> int:
    # A copy of the Secret older than a write made at ``now`` exists for at most P after it, and the
    # clock that copy's signer reads may be up to M ahead of ours across that span.
    return now + spec.propagation + spec.margin


def _withdraw_lost(
    now: int, records: Sequence[KeyRecord], private: Collection[str], spec: RotationSpec
) -> tuple[list[KeyRecord], list[str], list[str]]:
    """Records after the private keys of every kid outside ``private`` were lost; (kept, lost, dropped).

    No copy of the Secret written from now on can sign with a lost key, so it retires now. Every older
    copy (up to P old) still signs with it on that copy's schedule:

    * a key with a scheduled removal keeps it: its retirement was written P + M before it takes
      effect, so every copy that can still sign holds it, and the removal covers its last token;
    * any other key (active with no successor yet, next, or not yet scheduled) may sign until the
      last stale copy is gone, and is removed as if it retired then;
    * a key that even the stale copies would activate only after they are gone never signs and is
      dropped. A key with no recorded activation is kept: the record may lag the Secret by one write.
    """
    kept: list[KeyRecord] = []
    lost: list[str] = []
    dropped: list[str] = []
    for r in records:
        if r.kid in private or (r.retires_at is not None and r.retires_at <= now):
            kept.append(r)
            continue
        remove_at = r.remove_at
        if remove_at is None:
            last = _last_stale_signature(now, spec)
            if r.activates_at is not None and r.activates_at > last:
                dropped.append(r.kid)
                continue
            remove_at = _removal_time(last, spec)
        kept.append(dataclasses.replace(r, retires_at=now, remove_at=remove_at))
        lost.append(r.kid)
    return kept, lost, dropped


def _predecessor(keys: Sequence[KeyRecord]) -> KeyRecord | None:
    """The key a newly scheduled key takes over from: the last one scheduled that has no successor."""
    scheduled = [k for k in keys if k.activates_at is not None and k.retires_at is None]
    return max(scheduled, key=lambda k: k.activates_at or 0, default=None)


def _activation(
    record: KeyRecord, published_at: int, predecessor: KeyRecord | None, base: int, spec: RotationSpec
) -> int:
    if predecessor is not None:
        assert predecessor.activates_at is not None
        return max(_earliest_activation(published_at, base, spec), predecessor.activates_at + spec.every)
    if record.activate_on_publish:
        # After an emergency the user chose availability: tokens from the fresh key may fail for up
        # to P, which the documentation states.
        return max(published_at, base)
    return _earliest_activation(published_at, base, spec)


def _base(now: int, records: Sequence[KeyRecord]) -> int:
    # Past events already recorded bound "now" from below: a clock stepped backwards must not make a
    # new timestamp earlier than one it follows.
    return max([now, *(r.created_at for r in records), *(r.published_at or now for r in records)])


def earliest_activation(now: int, records: Sequence[KeyRecord], spec: RotationSpec) -> int | None:
    """The earliest moment a key still waiting for publication can activate (None: no key waits).

    No activation time exists before a key is published everywhere, so this is what an operator can
    tell a user meanwhile: if the key is published at any moment from ``now`` on, :func:`plan` gives
    it this activation time or a later one.
    """
    waiting = [r for r in records if r.published_at is None and r.retires_at is None]
    if not waiting:
        return None
    base, predecessor = _base(now, records), _predecessor(records)
    return min(_activation(r, now, predecessor, base, spec) for r in waiting)


def plan(
    now: int,
    records: Sequence[KeyRecord],
    spec: RotationSpec,
    *,
    revoked: Collection[str] = (),
    on_revoke: OnRevoke = "Pause",
    private: Collection[str] | None = None,
) -> Plan:
    """Decide the desired key records at ``now`` from the persisted ones (see the module docstring).

    ``private``: the kids whose private keys the Secret holds (None: all of them). Every other record
    is a lost key (:func:`_withdraw_lost`). Revocation is applied first: a revoked key is withdrawn
    whether or not its private part survived.
    """
    base = _base(now, records)
    removed: list[str] = []
    current = signing_key(records, now)
    keys = list(records)

    revoked_set = set(revoked)
    active_revoked = False
    if revoked_set & {r.kid for r in keys}:
        active_revoked = current is not None and current.kid in revoked_set
        kept = []
        for r in keys:
            # The keys that were not yet active share the Secret with the compromised active key.
            compromised = active_revoked and key_state(r, now) in ("pending", "next")
            if r.kid in revoked_set or compromised:
                removed.append(r.kid)
            else:
                kept.append(r)
        # A key whose scheduled successor was revoked before it activated keeps signing until a
        # fresh successor is scheduled, rather than retiring into a gap with no signing key.
        successors = {r.activates_at for r in kept}
        keys = [
            dataclasses.replace(r, retires_at=None, remove_at=None)
            if r.retires_at is not None and r.retires_at > now and r.retires_at not in successors
            else r
            for r in kept
        ]

    lost: list[str] = []
    never_signed: list[str] = []
    if private is not None:
        keys, lost, never_signed = _withdraw_lost(now, keys, private, spec)
        removed.extend(never_signed)

    expired = [r for r in keys if r.remove_at is not None and r.remove_at <= now]
    removed.extend(r.kid for r in expired)
    keys = [r for r in keys if not (r.remove_at is not None and r.remove_at <= now)]

    keys.sort(key=lambda r: (r.created_at, r.kid))
    for i, r in enumerate(keys):
        if r.published_at is None or r.activates_at is not None:
            continue
        predecessor = _predecessor(keys)
        activates = _activation(r, r.published_at, predecessor, base, spec)
        keys[i] = dataclasses.replace(r, activates_at=activates)
        if predecessor is not None:
            j = keys.index(predecessor)
            keys[j] = dataclasses.replace(
                predecessor, retires_at=activates, remove_at=_removal_time(activates, spec)
            )

    waiting = any(key_state(r, now) in ("pending", "next") for r in keys)
    generate = not waiting and len(keys) < MAX_KEYS

    future = [
        t for r in keys for t in (r.activates_at, r.retires_at, r.remove_at) if t is not None and t > now
    ]
    active = signing_key(keys, now)
    return Plan(
        keys=tuple(keys),
        generate=generate,
        wake_at=min(future, default=None),
        active_kid=active.kid if active is not None else None,
        removed=tuple(removed),
        immediate=generate and active_revoked and on_revoke == "Immediate",
        lost=tuple(lost),
        never_signed=tuple(never_signed),
    )
