"""Build and parse the projected ConfigMap (docs/architecture.md, "The projected ConfigMap").

The operator renders a :class:`PolicyTrust` into ConfigMap data with :func:`render_configmap_data`; the
verifier reads the mounted files back with :func:`parse_trust_files`. Both live here so the format has
one definition. Everything is pure: no I/O, no clock.

Guarantees: rendering is deterministic (sorted keys, compact separators, keys sorted by (issuer ref,
kid)), so equal input gives byte-equal output and :func:`content_hash` detects no-op writes. Parsing
rejects anything malformed with :class:`~jwt_trust.errors.TrustStoreError` and never returns a
half-read policy.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jwt_trust.algorithms import ALGORITHMS, normalise_algorithm
from jwt_trust.errors import TrustStoreError

MAX_CONFIGMAP_BYTES = 1024 * 1024
TRUST_FILE = "trust.json"
JWKS_FILE = "jwks.json"
FORMAT_VERSION = 1
# Every algorithm we verify, under its canonical name: each key is bound to the algorithms its type fits.
DEFAULT_ALGORITHMS: tuple[str, ...] = tuple(
    sorted((name for name in ALGORITHMS if normalise_algorithm(name) == name), key=str.lower)
)


@dataclass(frozen=True)
class IssuerTrust:
    """One issuer of a policy: its ``iss`` and the public JWKs that verify only its tokens."""

    ref: str
    issuer: str
    keys: tuple[dict[str, str], ...]
    revoked_kids: tuple[str, ...] = ()
    revoked_jtis: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True)
class PolicyTrust:
    """The verification policy of one TrustPolicy, as projected into every selected namespace."""

    policy: str
    issuers: tuple[IssuerTrust, ...]
    audiences: tuple[str, ...] = ()
    algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS
    typ: str | None = None
    required_claims: tuple[str, ...] = ()
    leeway_seconds: int = 60


def issuer_jwks_key(ref: str) -> str:
    """ConfigMap key of one issuer's JWK Set: ``"ns/name"`` -> ``"issuer.ns.name.jwks.json"``."""
    namespace, sep, name = ref.partition("/")
    if not sep or not namespace or not name or "/" in name:
        raise ValueError(f"issuer ref must be 'namespace/name', got {ref!r}")
    return f"issuer.{namespace}.{name}.jwks.json"


def _dump(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _sorted_keys(keys: tuple[dict[str, str], ...]) -> list[dict[str, str]]:
    return sorted(keys, key=lambda jwk: jwk.get("kid", ""))


def render_configmap_data(trust: PolicyTrust, *, revision: int) -> dict[str, str]:
    """Render the ConfigMap ``data``: ``jwks.json``, one JWK Set per issuer, and ``trust.json``."""
    data: dict[str, str] = {}
    all_keys: list[dict[str, str]] = []
    issuers_json: list[dict[str, Any]] = []
    for issuer in sorted(trust.issuers, key=lambda i: i.ref):
        keys = _sorted_keys(issuer.keys)
        all_keys.extend(keys)
        jwks_key = issuer_jwks_key(issuer.ref)
        data[jwks_key] = _dump({"keys": keys})
        issuers_json.append(
            {
                "ref": issuer.ref,
                "issuer": issuer.issuer,
                "jwksKey": jwks_key,
                "kids": [jwk["kid"] for jwk in keys if "kid" in jwk],
                "revokedKids": sorted(issuer.revoked_kids),
                "revokedJtis": [{"jti": jti, "exp": exp} for jti, exp in sorted(issuer.revoked_jtis)],
            }
        )
    data[JWKS_FILE] = _dump({"keys": all_keys})
    data[TRUST_FILE] = _dump(
        {
            "version": FORMAT_VERSION,
            "policy": trust.policy,
            "revision": revision,
            "audiences": list(trust.audiences),
            "algorithms": list(trust.algorithms),
            "typ": trust.typ,
            "requiredClaims": list(trust.required_claims),
            "leewaySeconds": trust.leeway_seconds,
            "issuers": issuers_json,
        }
    )
    return data


def content_hash(data: Mapping[str, str]) -> str:
    """SHA-256 hex over a canonical encoding of the ConfigMap data (order of keys does not matter)."""
    return hashlib.sha256(_dump(dict(data)).encode("utf-8")).hexdigest()


# --- parsing -------------------------------------------------------------------------------------


def _load_json(files: Mapping[str, bytes], name: str) -> Any:
    if name not in files:
        raise TrustStoreError(f"trust directory has no {name}")
    raw = files[name]
    if len(raw) > MAX_CONFIGMAP_BYTES:
        raise TrustStoreError(f"{name} exceeds {MAX_CONFIGMAP_BYTES} bytes")
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise TrustStoreError(f"{name} is not valid UTF-8 JSON: {type(exc).__name__}") from None


def _str_list(value: Any, what: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TrustStoreError(f"{what} must be a list of strings")
    return tuple(value)


def _field(obj: Mapping[str, Any], name: str, kind: type | tuple[type, ...], what: str) -> Any:
    value = obj.get(name)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise TrustStoreError(f"{what}.{name} is missing or has the wrong type")
    return value


def _parse_issuer(entry: Any, files: Mapping[str, bytes], index: int) -> IssuerTrust:
    what = f"trust.json issuers[{index}]"
    if not isinstance(entry, dict):
        raise TrustStoreError(f"{what} must be an object")
    ref = _field(entry, "ref", str, what)
    issuer = _field(entry, "issuer", str, what)
    jwks_key = _field(entry, "jwksKey", str, what)
    kids = _str_list(entry.get("kids", []), f"{what}.kids")
    revoked_kids = _str_list(entry.get("revokedKids", []), f"{what}.revokedKids")
    raw_jtis = entry.get("revokedJtis", [])
    if not isinstance(raw_jtis, list):
        raise TrustStoreError(f"{what}.revokedJtis must be a list")
    revoked_jtis: list[tuple[str, int]] = []
    for item in raw_jtis:
        if not isinstance(item, dict):
            raise TrustStoreError(f"{what}.revokedJtis entries must be objects")
        revoked_jtis.append((_field(item, "jti", str, what), _field(item, "exp", int, what)))
    jwks = _load_json(files, jwks_key)
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
        raise TrustStoreError(f"{jwks_key} is not a JWK Set")
    wanted = set(kids)
    keys: list[dict[str, str]] = []
    for jwk in jwks["keys"]:
        if not isinstance(jwk, dict):
            raise TrustStoreError(f"{jwks_key} holds a key that is not an object")
        # trust.json's kids decide which keys the issuer owns; a key not listed there is ignored.
        kid = jwk.get("kid")
        if isinstance(kid, str) and kid in wanted:
            keys.append(jwk)
    return IssuerTrust(
        ref=ref,
        issuer=issuer,
        keys=tuple(keys),
        revoked_kids=revoked_kids,
        revoked_jtis=tuple(revoked_jtis),
    )


def parse_trust_files(files: Mapping[str, bytes]) -> tuple[PolicyTrust, int]:
    """Parse ``trust.json`` and the per-issuer JWK Sets it names; return the policy and its revision."""
    doc = _load_json(files, TRUST_FILE)
    if not isinstance(doc, dict):
        raise TrustStoreError("trust.json must be an object")
    if doc.get("version") != FORMAT_VERSION:
        raise TrustStoreError(f"trust.json version must be {FORMAT_VERSION}")
    policy = _field(doc, "policy", str, "trust.json")
    revision = _field(doc, "revision", int, "trust.json")
    leeway = doc.get("leewaySeconds", 60)
    if not isinstance(leeway, int) or isinstance(leeway, bool) or leeway < 0:
        raise TrustStoreError("trust.json leewaySeconds must be a non-negative integer")
    typ = doc.get("typ")
    if typ is not None and not isinstance(typ, str):
        raise TrustStoreError("trust.json typ must be a string or null")
    issuers_raw = doc.get("issuers")
    if not isinstance(issuers_raw, list):
        raise TrustStoreError("trust.json issuers must be a list")
    issuers = tuple(_parse_issuer(entry, files, i) for i, entry in enumerate(issuers_raw))
    trust = PolicyTrust(
        policy=policy,
        issuers=issuers,
        audiences=_str_list(doc.get("audiences", []), "trust.json audiences"),
        algorithms=_str_list(doc.get("algorithms", list(DEFAULT_ALGORITHMS)), "trust.json algorithms"),
        typ=typ,
        required_claims=_str_list(doc.get("requiredClaims", []), "trust.json requiredClaims"),
        leeway_seconds=leeway,
    )
    return trust, revision
