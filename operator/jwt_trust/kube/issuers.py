"""Issuer decisions: spec parsing, one reconciliation step of a generated issuer, external JWKS, status.

Pure: no I/O, no clock, no kopf. The handler reads the Issuer, its Secret and the policies' progress,
calls :func:`step`, and writes what it returns (the Secret first, then the status), so that a key is in
the Secret before any policy publishes it and published everywhere before any signer uses it.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from jwt_trust.algorithms import ALGORITHMS, normalise_algorithm
from jwt_trust.errors import InvalidKey, SigningError
from jwt_trust.keys import (
    PrivateKey,
    PublicKey,
    ambiguous_kids,
    generate_private_key,
    public_jwk,
    public_key_from_jwk,
    thumbprint,
)
from jwt_trust.rotation import (
    KeyRecord,
    OnRevoke,
    Plan,
    RotationSpec,
    key_state,
    mark_published,
    parse_duration,
    plan,
)
from jwt_trust.signer import SigningKeys, render_secret_data

from .errors import SpecError

SECRET_SUFFIX = "-signing-keys"  # noqa: S105 (a name, not a password)
MAX_EXTERNAL_KEYS = 64
# The algorithms an Issuer generates keys for: spec.algorithm's enum in the CRD (where Ed25519, the RFC
# 9864 name, is normalised to EdDSA). Every other algorithm of jwt_trust.algorithms is verified (external
# issuers' keys, trust policies) but not generated: a longer hash does not make an RSA key stronger.
GENERATED_ALGORITHMS = ("EdDSA", "ES256", "ES384", "ES512", "PS256", "RS256")
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})


@dataclass(frozen=True)
class ExternalSpec:
    jwks_url: str | None
    inline_jwks: Mapping[str, Any] | None
    ca_bundle: str | None
    refresh_interval: int
    timeout: int
    max_bytes: int


@dataclass(frozen=True)
class IssuerSpec:
    issuer: str
    algorithm: str
    rsa_bits: int
    rotation: RotationSpec
    revoked_kids: frozenset[str]
    revoked_jtis: tuple[tuple[str, int], ...]
    revocation_mode: OnRevoke
    retain_secret: bool
    external: ExternalSpec | None
    discovery: bool = False  # served by the discovery service (and gated on it)


def secret_name(issuer_name: str) -> str:
    return f"{issuer_name}{SECRET_SUFFIX}"


def _duration(section: Mapping[str, Any], name: str, default: str, where: str) -> int:
    try:
        return parse_duration(str(section.get(name, default)))
    except ValueError as error:
        raise SpecError("InvalidDuration", f"{where}.{name}: {error}") from None


def epoch(text: str) -> int:
    """Epoch seconds of an RFC 3339 time as Kubernetes writes it (``2026-11-29T03:00:00Z``)."""
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())


def _max_bytes(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1024 <= value <= 1024 * 1024:
        raise SpecError(
            "InvalidExternal",
            f"spec.external.maxBytes must be an integer from 1024 to 1048576, not {value!r}",
        )
    return value


def parse_issuer_spec(spec: Mapping[str, Any]) -> IssuerSpec:
    """Validate what the CRD schema cannot (or what an older CRD let through)."""
    issuer = spec.get("issuer")
    if not isinstance(issuer, str) or not issuer:
        raise SpecError("InvalidIssuer", "spec.issuer must be a non-empty URL or URN")
    try:
        algorithm = normalise_algorithm(str(spec.get("algorithm", "ES256")))
    except ValueError as error:
        raise SpecError("UnsupportedAlgorithm", str(error)) from None
    if algorithm not in GENERATED_ALGORITHMS:
        raise SpecError(
            "UnsupportedAlgorithm",
            f"keys are generated for {', '.join(GENERATED_ALGORITHMS)} (and Ed25519), not {algorithm}",
        )
    rsa_bits = spec.get("rsaKeySize", 3072)
    if rsa_bits not in (2048, 3072, 4096) or isinstance(rsa_bits, bool):
        raise SpecError("InvalidKeySize", f"spec.rsaKeySize must be 2048, 3072 or 4096, not {rsa_bits}")
    rotation_section = spec.get("rotation") or {}
    rotation = RotationSpec(
        every=_duration(rotation_section, "every", "24h", "spec.rotation"),
        max_token_lifetime=_duration(rotation_section, "maxTokenLifetime", "1h", "spec.rotation"),
        propagation=_duration(rotation_section, "propagation", "5m", "spec.rotation"),
        leeway=_duration(rotation_section, "leeway", "60s", "spec.rotation"),
        margin=_duration(rotation_section, "margin", "5m", "spec.rotation"),
    )
    if problems := rotation.problems():
        raise SpecError("InvalidRotation", "; ".join(problems))
    revoked_jtis = []
    for entry in spec.get("revokedTokens") or ():
        try:
            revoked_jtis.append((str(entry["jti"]), epoch(str(entry["expiresAt"]))))
        except (KeyError, TypeError, ValueError):
            raise SpecError(
                "InvalidRevokedToken",
                f"spec.revokedTokens entry {entry!r} needs jti and an RFC 3339 expiresAt",
            ) from None
    mode = spec.get("revocationMode", "Pause")
    if mode not in ("Pause", "Immediate"):
        raise SpecError(
            "InvalidRevocationMode", f"spec.revocationMode must be Pause or Immediate, not {mode!r}"
        )
    external = None
    if (section := spec.get("external")) is not None:
        url, inline = section.get("jwksURL"), section.get("jwks")
        if (url is None) == (inline is None):
            raise SpecError("InvalidExternal", "spec.external needs exactly one of jwksURL and jwks")
        if url is not None and not str(url).startswith("https://"):
            raise SpecError("InvalidExternal", "spec.external.jwksURL must use https")
        external = ExternalSpec(
            jwks_url=url,
            inline_jwks=inline,
            ca_bundle=section.get("caBundle") or None,
            refresh_interval=max(_duration(section, "refreshInterval", "5m", "spec.external"), 10),
            timeout=max(_duration(section, "timeout", "10s", "spec.external"), 1),
            max_bytes=_max_bytes(section.get("maxBytes", 262144)),
        )
    return IssuerSpec(
        issuer=issuer,
        algorithm=algorithm,
        rsa_bits=rsa_bits,
        rotation=rotation,
        revoked_kids=frozenset(str(kid) for kid in spec.get("revokedKeys") or ()),
        revoked_jtis=tuple(revoked_jtis),
        revocation_mode=mode,
        retain_secret=spec.get("deletionPolicy", "Delete") == "Retain",
        external=external,
        discovery=bool((spec.get("discovery") or {}).get("enabled", False)),
    )


@dataclass
class Step:
    """The result of one reconciliation step of a generated issuer."""

    records: tuple[KeyRecord, ...]
    private_keys: dict[str, PrivateKey]
    public_keys: dict[str, dict[str, str]]
    plan: Plan
    generated: list[str] = field(default_factory=list)
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (type, reason, message)

    def secret_data(self, spec: IssuerSpec) -> dict[str, bytes]:
        return render_secret_data(
            issuer=spec.issuer,
            max_token_lifetime=spec.rotation.max_token_lifetime,
            records=self.records,
            private_keys=self.private_keys,
        )


def stored_public_keys(status: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """The public JWKs the status already publishes, by kid (what the policies project)."""
    found: dict[str, dict[str, str]] = {}
    for entry in status.get("keys") or ():
        jwk = entry.get("publicKey") if isinstance(entry, Mapping) else None
        if isinstance(jwk, Mapping) and isinstance(jwk.get("kid"), str):
            found[jwk["kid"]] = {str(k): str(v) for k, v in jwk.items()}
    return found


def step(
    now: int,
    spec: IssuerSpec,
    stored: SigningKeys | None,
    published: Collection[str],
    *,
    status_keys: Mapping[str, dict[str, str]] | None = None,
    recorded: Sequence[KeyRecord] = (),
    has_targets: bool = True,
    generate_keys: bool = True,
) -> Step:
    """Plan the key set of a generated issuer at ``now`` and generate at most one key.

    ``published`` holds the kids that every target of every policy trusting this issuer has written;
    when no policy trusts the issuer (``has_targets`` False) a key counts as published when created.
    ``recorded`` are the records kept in the status. One the Secret lacks, or whose private key the
    Secret lacks (the Secret was deleted by hand, replaced, or restored from an old copy), is a lost
    key: the rotation plan keeps it published for as long as stale copies of the old Secret may sign
    with it. ``generate_keys`` False winds the issuer's keys down instead (it now mirrors an external
    JWKS): nothing is generated, and with no private key left every record is such a lost key.
    """
    records: list[KeyRecord] = list(stored.records) if stored else []
    in_secret = {r.kid for r in records}
    records += [r for r in recorded if r.kid not in in_secret]
    before = {r.kid: r for r in records}
    private_keys: dict[str, PrivateKey] = dict(stored.private_keys) if stored else {}
    public_keys = dict(status_keys or {})
    events: list[tuple[str, str, str]] = []
    for kid, key in private_keys.items():
        record = next((r for r in records if r.kid == kid), None)
        if record is not None:
            public_keys[kid] = public_jwk(key.public_key(), record.alg)

    def planned(records: Sequence[KeyRecord]) -> Plan:
        return plan(
            now,
            records,
            spec.rotation,
            revoked=spec.revoked_kids,
            on_revoke=spec.revocation_mode,
            private=private_keys.keys(),
        )

    records = list(_mark(records, published, now, has_targets=has_targets))
    result = planned(records)
    generated: list[str] = []
    if result.generate and generate_keys:
        key = generate_private_key(spec.algorithm, rsa_bits=spec.rsa_bits)
        jwk = public_jwk(key.public_key(), spec.algorithm)
        kid = jwk["kid"]
        private_keys[kid] = key
        public_keys[kid] = jwk
        generated.append(kid)
        fresh = KeyRecord(kid=kid, alg=spec.algorithm, created_at=now, activate_on_publish=result.immediate)
        records = list(_mark([*result.keys, fresh], published, now, has_targets=has_targets))
        first = result
        result = planned(records)
        # The first plan already dropped and retired what it found; keep that in the result so it is
        # reported.
        result = dataclasses.replace(
            result,
            removed=tuple(dict.fromkeys((*first.removed, *result.removed))),
            lost=tuple(dict.fromkeys((*first.lost, *result.lost))),
            never_signed=tuple(dict.fromkeys((*first.never_signed, *result.never_signed))),
        )
    kept = {r.kid: r for r in result.keys}
    for kid in result.lost:
        until = iso(kept[kid].remove_at)
        events.append(
            (
                "Warning",
                "KeyLost",
                f"key {kid} has no private key in the Secret: it stops signing now and stays published "
                f"until {until}, for the tokens already signed with it",
            )
        )
    for kid in result.removed:
        private_keys.pop(kid, None)
        public_keys.pop(kid, None)
        if kid in result.never_signed:
            events.append(("Warning", "KeyLost", f"key {kid} has no private key and never signed: withdrawn"))
        elif kid in spec.revoked_kids:
            events.append(("Warning", "KeyRevoked", f"key {kid} withdrawn"))
        else:
            events.append(("Normal", "KeyRemoved", f"key {kid} withdrawn"))
    for record in result.keys:
        old = before.get(record.kid)
        if record.activates_at is not None and (old is None or old.activates_at is None):
            when = _iso(record.activates_at)
            events.append(("Normal", "KeyScheduled", f"key {record.kid} activates at {when}"))
    return Step(
        records=result.keys,
        private_keys={kid: key for kid, key in private_keys.items() if kid in kept},
        public_keys={kid: jwk for kid, jwk in public_keys.items() if kid in kept},
        plan=result,
        generated=generated,
        events=events,
    )


def _mark(
    records: Sequence[KeyRecord], published: Collection[str], now: int, *, has_targets: bool
) -> tuple[KeyRecord, ...]:
    kids = {r.kid for r in records} if not has_targets else set(published)
    return mark_published(records, kids, now)


def _iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso(epoch: int | None) -> str | None:
    return None if epoch is None else _iso(epoch)


def status_keys(
    records: Sequence[KeyRecord], public_keys: Mapping[str, dict[str, str]], now: int
) -> list[dict[str, Any]]:
    """The ``status.keys`` list: every record that still has a public key, with its timestamps."""
    out: list[dict[str, Any]] = []
    for record in sorted(records, key=lambda r: (r.created_at, r.kid)):
        jwk = public_keys.get(record.kid)
        if jwk is None:
            continue
        entry: dict[str, Any] = {
            "kid": record.kid,
            "alg": record.alg,
            "state": key_state(record, now),
            "createdAt": _iso(record.created_at),
            "publicKey": jwk,
        }
        for name, value in (
            ("publishedAt", record.published_at),
            ("activatesAt", record.activates_at),
            ("retiresAt", record.retires_at),
            ("removeAt", record.remove_at),
        ):
            if value is not None:
                entry[name] = _iso(value)
        out.append(entry)
    return out


def records_from_status(status: Mapping[str, Any], *, external_at: int | None = None) -> list[KeyRecord]:
    """The key records kept in ``status.keys``: what the Secret lost, if it lost anything.

    Keys mirrored from an external JWKS have no record; with ``external_at`` (the Issuer has just
    stopped mirroring one) each becomes a record created then, whose private key we never had, so
    the rotation plan keeps it published until the tokens the provider signed with it have expired.
    """
    records: list[KeyRecord] = []
    for entry in status.get("keys") or ():
        try:
            if entry.get("state") == "external":
                if external_at is not None:
                    jwk = entry.get("publicKey") or {}
                    # The record's alg is informational (nothing signs without the private key), and
                    # a provider may publish a JWK without one.
                    alg = str(entry.get("alg") or jwk.get("alg") or "unknown")
                    records.append(KeyRecord(kid=str(entry["kid"]), alg=alg, created_at=external_at))
                continue

            def when(name: str, entry: Mapping[str, Any] = entry) -> int | None:
                value = entry.get(name)
                return None if value is None else epoch(str(value))

            records.append(
                KeyRecord(
                    kid=str(entry["kid"]),
                    alg=str(entry["alg"]),
                    created_at=epoch(str(entry["createdAt"])),
                    published_at=when("publishedAt"),
                    activates_at=when("activatesAt"),
                    retires_at=when("retiresAt"),
                    remove_at=when("removeAt"),
                )
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            continue
    return records


@dataclass(frozen=True)
class ExternalJWKS:
    """An external issuer's key set as the operator mirrors it.

    ``keys`` are published as they are (string members only, ``kid`` filled in with the RFC 7638
    thumbprint when absent); ``warnings`` say, one line each, which keys were left out and why.
    """

    keys: tuple[dict[str, str], ...]
    warnings: tuple[str, ...] = ()


def parse_external_jwks(raw: bytes | Mapping[str, Any], *, max_keys: int = MAX_EXTERNAL_KEYS) -> ExternalJWKS:
    """Validate an external JWK Set: the public signature keys we can verify, and why the others are not.

    A key we cannot verify (an algorithm, key type or curve we do not support, a key that does not fit
    its ``alg``, an invalid or known-weak key) is skipped with a warning, so that one odd key does not
    take the provider's other keys away; so are the keys of a kid that names two different keys
    (:func:`jwt_trust.keys.ambiguous_kids`, the rule the verifier applies too). Encryption keys are
    skipped silently. Raises :class:`SpecError` (reason ``InvalidJWKS``) for a document that is not a
    JWK Set, one with more than ``max_keys`` keys, or none we can use; a private or symmetric member
    anywhere refuses the whole set, since publishing it would leak a secret.
    """
    try:
        document = json.loads(raw) if isinstance(raw, bytes | bytearray) else raw
    except ValueError as error:
        raise SpecError("InvalidJWKS", f"JWKS is not JSON: {error}") from None
    keys = document.get("keys") if isinstance(document, Mapping) else None
    if not isinstance(keys, list):
        raise SpecError("InvalidJWKS", "JWKS must be an object with a 'keys' array")
    if len(keys) > max_keys:
        raise SpecError("InvalidJWKS", f"JWKS has {len(keys)} keys; at most {max_keys} are accepted")
    accepted: list[tuple[dict[str, str], PublicKey]] = []
    warnings: list[str] = []
    for index, jwk in enumerate(keys):
        if not isinstance(jwk, Mapping):
            raise SpecError("InvalidJWKS", f"JWKS key #{index} is not an object")
        # A secret in a public set means the provider leaks keys: nothing of it is trusted.
        if _PRIVATE_MEMBERS & set(jwk) or jwk.get("kty") == "oct":
            raise SpecError(
                "InvalidJWKS", f"JWKS key #{index} contains private or symmetric key material; refused"
            )
        if jwk.get("use", "sig") != "sig":
            continue
        kid = jwk.get("kid")
        named = f"JWKS key #{index}" + (f" (kid {kid[:64]!r})" if isinstance(kid, str) else "")
        alg = jwk.get("alg")
        if alg is not None and (not isinstance(alg, str) or alg not in ALGORITHMS):
            shown = repr(alg[:32]) if isinstance(alg, str) else "that is not a string"
            warnings.append(f"{named} skipped: algorithm {shown} is not one we verify")
            continue
        try:
            public_key = public_key_from_jwk(jwk)
        except (InvalidKey, ValueError, TypeError, KeyError) as error:
            warnings.append(f"{named} skipped: not a usable public key: {error}")
            continue
        if alg is not None and not ALGORITHMS[alg].fits(public_key):
            warnings.append(f"{named} skipped: the key does not fit its algorithm {alg}")
            continue
        cleaned = {str(k): str(v) for k, v in jwk.items() if isinstance(v, str)}
        cleaned.setdefault("kid", thumbprint(cleaned))
        accepted.append((cleaned, public_key))
    ambiguous = ambiguous_kids((jwk["kid"], public_key) for jwk, public_key in accepted)
    for kid, count in sorted(ambiguous.items()):
        warnings.append(f"JWKS kid {kid[:64]!r} names {count} different keys; none of them is mirrored")
    out = tuple(jwk for jwk, _public_key in accepted if jwk["kid"] not in ambiguous)
    if not out:
        why = f" ({'; '.join(warnings)})" if warnings else ""
        raise SpecError("InvalidJWKS", f"JWKS has no usable signature keys{why}")
    return ExternalJWKS(keys=out, warnings=tuple(warnings))


def load_stored(data: Mapping[str, bytes] | None) -> SigningKeys | None:
    """Parse the Secret's data, or None when it is absent; a corrupt Secret raises SpecError."""
    if not data:
        return None
    try:
        return SigningKeys.from_secret_data(data)
    except (SigningError, InvalidKey, ValueError) as error:
        raise SpecError("CorruptSecret", f"the signing-key Secret cannot be read: {error}") from None
