"""What the discovery service serves, decided from an Issuer's API JSON: pure, no I/O, no clock.

For each Issuer that opts in (``spec.discovery.enabled``), two documents under
``{base}/issuers/{namespace}/{name}``:

* ``/jwks``: the JWK Set ``{"keys": [...]}`` of exactly the keys a TrustPolicy publishes for that
  Issuer (:func:`jwt_trust.kube.policies.issuer_trust`: ``status.keys[].publicKey`` minus
  ``spec.revokedKeys``), rendered as the projected ConfigMap's ``issuer.<ns>.<name>.jwks.json`` is
  (sorted by kid, sorted members, compact), so the two are byte-equal;
* ``/.well-known/openid-configuration``: OpenID Provider metadata naming ``spec.issuer`` and that JWKS.

Each document carries a strong ETag (a hash of its bytes) and the freshness rule of its Issuer
(:func:`freshness`). :func:`served_kids` reads a served JWK Set back into its kids, for whoever checks
what a replica serves.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .errors import SpecError
from .issuers import parse_issuer_spec
from .policies import issuer_trust

JWKS_CONTENT_TYPE = "application/jwk-set+json"
CONFIGURATION_CONTENT_TYPE = "application/json"
CONFIGURATION_PATH = ".well-known/openid-configuration"
JWKS_PATH = "jwks"
# Clients never cache a document longer than this, whatever the Issuer's propagation: a revocation
# reaches them within the hour at worst.
MAX_AGE_CAP = 3600
# The freshness of an Issuer whose spec cannot be parsed (the operator reports it Ready=False and keeps
# publishing its keys): treated as a propagation of two minutes.
FALLBACK_PROPAGATION = 120
# Never in a served JWK: private or symmetric key material.
PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "r", "t", "k"})
# A Kubernetes namespace (DNS label) and an object name (DNS subdomain).
_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_NAME = re.compile(r"[a-z0-9]([-.a-z0-9]{0,251}[a-z0-9])?")


@dataclass(frozen=True)
class Document:
    body: bytes
    etag: str  # strong, quoted: '"<hex>"'
    content_type: str


@dataclass(frozen=True)
class IssuerDocuments:
    """Everything served for one opted-in Issuer, rendered once per change of the Issuer."""

    ref: str  # namespace/name
    issuer: str  # spec.issuer, exactly
    kids: tuple[str, ...]
    jwks: Document
    configuration: Document
    max_age: int  # Cache-Control max-age of both documents, seconds
    stale_limit: int  # how long a replica whose cache is failing may keep serving them, seconds


def _dump(value: Any) -> bytes:
    # The projection's canonical form (jwt_trust.projection): sorted members, compact, UTF-8.
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def document(body: bytes, content_type: str) -> Document:
    return Document(body, f'"{hashlib.sha256(body).hexdigest()[:32]}"', content_type)


def discovery_enabled(issuer: Mapping[str, Any]) -> bool:
    spec = issuer.get("spec")
    section = spec.get("discovery") if isinstance(spec, Mapping) else None
    return isinstance(section, Mapping) and section.get("enabled") is True


def normalise_base_url(url: str) -> str:
    """The service's external base URL without a trailing slash; ValueError unless it is https with a
    host and no query, fragment or credentials."""
    parts = urlsplit(url.strip())
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError(f"the discovery URL must be https://host[:port][/path], not {url!r}")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError(f"the discovery URL must not carry a query, fragment or credentials: {url!r}")
    return url.strip().rstrip("/")


def issuer_path(namespace: str, name: str) -> str:
    return f"/issuers/{namespace}/{name}"


def jwks_url(base_url: str, namespace: str, name: str) -> str:
    return f"{base_url}{issuer_path(namespace, name)}/{JWKS_PATH}"


def configuration_url(base_url: str, namespace: str, name: str) -> str:
    return f"{base_url}{issuer_path(namespace, name)}/{CONFIGURATION_PATH}"


def parse_path(path: str) -> tuple[str, str, str] | None:
    """``(namespace, name, "jwks" | ".well-known/openid-configuration")`` for a path we serve, else None."""
    parts = path.split("/")
    # "", "issuers", namespace, name, then "jwks" or ".well-known", "openid-configuration"
    if len(parts) == 5 and parts[4] == JWKS_PATH:
        kind = JWKS_PATH
    elif len(parts) == 6 and parts[4] == ".well-known" and parts[5] == "openid-configuration":
        kind = CONFIGURATION_PATH
    else:
        return None
    if parts[0] or parts[1] != "issuers":
        return None
    namespace, name = parts[2], parts[3]
    if not _NAMESPACE.fullmatch(namespace) or not _NAME.fullmatch(name):
        return None
    return namespace, name, kind


def freshness(propagation: int) -> tuple[int, int]:
    """``(max_age, stale_limit)`` for an Issuer whose propagation is P seconds.

    The rotation plan guarantees every token verifies at any verifier whose copy of the keys is at
    most P old. A client's copy is as old as the replica's cache was when it fetched (up to
    ``stale_limit`` while the cache is failing; a healthy watch is seconds behind, which the plan's
    margin covers) plus how long the client keeps it (``max_age``); each gets half of P, so the sum
    stays within P. Capped at :data:`MAX_AGE_CAP`.
    """
    max_age = min(max(propagation, 0) // 2, MAX_AGE_CAP)
    return max_age, max(propagation, 0) - max_age


def public_keys(keys: tuple[dict[str, str], ...]) -> list[dict[str, str]]:
    """The keys to serve, sorted by kid; a key carrying private or symmetric material is never served
    (the status schema says there is none; this holds even if something wrote one)."""
    safe = [jwk for jwk in keys if not (PRIVATE_MEMBERS & jwk.keys()) and jwk.get("kty") != "oct"]
    return sorted(safe, key=lambda jwk: jwk.get("kid", ""))


def render_documents(issuer: Mapping[str, Any], base_url: str, now: int) -> IssuerDocuments | None:
    """The documents of one Issuer (API JSON), or None when it does not opt in or names no issuer."""
    if not discovery_enabled(issuer):
        return None
    meta = issuer.get("metadata") or {}
    namespace, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
    if not namespace or not name:
        return None
    ref = f"{namespace}/{name}"
    trust = issuer_trust(ref, issuer, now)
    if trust is None:
        return None
    try:
        propagation = parse_issuer_spec(issuer.get("spec") or {}).rotation.propagation
    except SpecError:
        propagation = FALLBACK_PROPAGATION
    max_age, stale_limit = freshness(propagation)
    keys = public_keys(trust.keys)
    algorithms = sorted({jwk["alg"] for jwk in keys if jwk.get("alg")})
    configuration = {
        "issuer": trust.issuer,
        "jwks_uri": jwks_url(base_url, namespace, name),
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": algorithms,
    }
    return IssuerDocuments(
        ref=ref,
        issuer=trust.issuer,
        kids=tuple(jwk["kid"] for jwk in keys if "kid" in jwk),
        jwks=document(_dump({"keys": keys}), JWKS_CONTENT_TYPE),
        configuration=document(_dump(configuration), CONFIGURATION_CONTENT_TYPE),
        max_age=max_age,
        stale_limit=stale_limit,
    )


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 If-None-Match: ``*`` or any listed tag equal to ``etag`` by weak comparison."""
    if not if_none_match:
        return False
    for candidate in if_none_match.split(","):
        tag = candidate.strip()
        if tag == "*":
            return True
        if tag.startswith("W/"):
            tag = tag[2:]
        if tag == etag:
            return True
    return False


def served_kids(jwks: bytes | str | Mapping[str, Any]) -> tuple[str, ...]:
    """The kids of a served JWK Set (the body of ``/jwks``, or its decoded JSON), sorted.

    For checking what a replica serves (say, that a key is out before it activates). Raises
    ValueError when it is not a JWK Set.
    """
    document_ = json.loads(jwks) if isinstance(jwks, bytes | str) else jwks
    keys = document_.get("keys") if isinstance(document_, Mapping) else None
    if not isinstance(keys, list):
        raise ValueError("not a JWK Set: no keys array")
    kids = []
    for jwk in keys:
        if not isinstance(jwk, Mapping) or not isinstance(jwk.get("kid"), str):
            raise ValueError("not a JWK Set of keys with kids")
        kids.append(jwk["kid"])
    return tuple(sorted(kids))
