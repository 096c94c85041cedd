"""The algorithm table: every JWS ``alg`` we sign or verify, and exactly how.

Why a table of our own instead of trusting a library's defaults: JWS algorithm confusion is the classic
JWT vulnerability, so each ``alg`` here is bound to one key type, one curve (or a minimum RSA size), one
hash and one signature encoding, and nothing else verifies. This table is the only place where an
``alg`` is bound to those: key import, key generation, signing and the verifier all read it. Guarantees:

- Every asymmetric algorithm of RFC 7518 §3.1, and EdDSA with Ed25519 (RFC 8037): ``RS256``, ``RS384``,
  ``RS512`` (RSASSA-PKCS1-v1_5), ``PS256``, ``PS384``, ``PS512`` (RSASSA-PSS), ``ES256`` (P-256),
  ``ES384`` (P-384), ``ES512`` (P-521) and ``EdDSA``. No HMAC algorithm and never ``none``.
- :meth:`Algorithm.verify` never raises for a bad signature or a key of the wrong type: it returns
  ``False``. It only returns ``True`` when the key fits the algorithm (:meth:`Algorithm.fits`) and the
  signature checks out.
- ECDSA signatures are the JWS form (RFC 7518 §3.4): fixed-length ``R || S`` (64, 96 and 132 bytes for
  P-256, P-384 and P-521). DER is never accepted, and ``r``/``s`` outside ``[1, n-1]`` are rejected
  before any curve arithmetic.
- RSA keys below 2048 bits never fit. ``PS*`` uses MGF1 with the same hash and a salt exactly as long as
  the digest (RFC 7518 §3.5), both when signing and verifying: a signature with another salt length
  does not verify.
- ``Ed25519`` (the RFC 9864 name) behaves exactly like ``EdDSA`` restricted to Ed25519, which is the only
  EdDSA curve we support.

Padding and hash objects are created once at import, and :meth:`Algorithm.verifier` binds everything
that depends only on the key once per key: verification is the hot path of every workload.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from jwt_trust import _hotpath

PrivateKey: TypeAlias = Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
PublicKey: TypeAlias = Ed25519PublicKey | ec.EllipticCurvePublicKey | rsa.RSAPublicKey

MIN_RSA_BITS = 2048


@dataclass(frozen=True)
class EcCurve:
    """The parameters of a JOSE curve name that both signing and key parsing need."""

    name: str  # the JOSE name, e.g. "P-256"
    curve: type[ec.EllipticCurve]
    coordinate_size: int  # bytes of x, y, r and s
    prime: int  # the field prime p: coordinates must be < p
    order: int  # the group order n: r and s must be in [1, n-1]


EC_CURVES: Mapping[str, EcCurve] = types.MappingProxyType(
    {
        "P-256": EcCurve(
            name="P-256",
            curve=ec.SECP256R1,
            coordinate_size=32,
            prime=2**256 - 2**224 + 2**192 + 2**96 - 1,
            order=0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
        ),
        "P-384": EcCurve(
            name="P-384",
            curve=ec.SECP384R1,
            coordinate_size=48,
            prime=2**384 - 2**128 - 2**96 + 2**32 - 1,
            order=int(
                "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973",
                16,
            ),
        ),
        "P-521": EcCurve(
            name="P-521",
            curve=ec.SECP521R1,
            coordinate_size=66,
            prime=2**521 - 1,
            order=int(
                "01FF" + "FFFFFFFF" * 7 + "FFFFFFFA51868783BF2F966B7FCC0148F"
                "709A5D03BB5C9B8899C47AEBB6FB71E91386409",
                16,
            ),
        ),
    }
)


@dataclass(frozen=True)
class Algorithm:
    """One JWS algorithm: which keys fit it and how it signs and verifies."""

    name: str
    kty: str  # "OKP" | "EC" | "RSA"
    crv: str | None  # "Ed25519", "P-256", "P-384", "P-521", or None for RSA
    signature_size: int | None  # fixed signature length in bytes; None for RSA (the modulus size)
    # What cryptography's sign/verify take after (signature, data): () for Ed25519, (ECDSA(hash),) for
    # ECDSA, (padding, hash) for RSA. Built once here, so that no per-alg lookup happens per token.
    parameters: tuple[Any, ...] = field(default=(), compare=False, repr=False)

    def fits(self, public_key: object) -> bool:
        """Whether ``public_key`` is the key type (and curve, and size) this algorithm requires."""
        if self.kty == "OKP":
            return isinstance(public_key, Ed25519PublicKey)
        if self.kty == "EC":
            return isinstance(public_key, ec.EllipticCurvePublicKey) and isinstance(
                public_key.curve, EC_CURVES[self.crv or ""].curve
            )
        return isinstance(public_key, rsa.RSAPublicKey) and public_key.key_size >= MIN_RSA_BITS

    def sign(self, private_key: PrivateKey, data: bytes) -> bytes:
        """Sign ``data``; raises ValueError if the key does not fit this algorithm."""
        if not self.fits(private_key.public_key()):
            raise ValueError(f"the private key does not fit algorithm {self.name}")
        if isinstance(private_key, Ed25519PrivateKey):
            return private_key.sign(data)
        if isinstance(private_key, ec.EllipticCurvePrivateKey):
            der = private_key.sign(data, *self.parameters)
            r, s = decode_dss_signature(der)
            half = EC_CURVES[self.crv or ""].coordinate_size
            return r.to_bytes(half, "big") + s.to_bytes(half, "big")
        rsa_padding, digest = self.parameters
        return private_key.sign(data, rsa_padding, digest)

    def verify(self, public_key: object, signature: bytes, data: bytes) -> bool:
        """True only if ``signature`` over ``data`` is valid for this algorithm and ``public_key``."""
        check = self.verifier(public_key)
        return check is not None and check(signature, data)

    def verifier(self, public_key: object) -> Callable[[bytes, bytes], bool] | None:
        """A ``check(signature, data) -> bool`` bound to ``public_key``, or None if the key does not fit.

        Everything that depends only on the key (its type, the curve's sizes, the padding) is decided
        here once, so that a verifier that keeps the result pays per token only for the signature.
        The check never raises for a bad signature: it returns False.
        """
        if not self.fits(public_key):
            return None
        # One C call per token when jwt_trust._speedups is built (no Python frame around the check).
        if isinstance(public_key, Ed25519PublicKey):
            return functools.partial(_hotpath.check_signature, public_key.verify, (), 64, None)
        if isinstance(public_key, ec.EllipticCurvePublicKey):
            # JWS R || S (RFC 7518 §3.4) only, r and s in range: anything else, DER included, is refused.
            curve = EC_CURVES[self.crv or ""]
            order = curve.order.to_bytes(curve.coordinate_size, "big")
            return functools.partial(_hotpath.check_signature, public_key.verify, self.parameters, 0, order)
        if isinstance(public_key, rsa.RSAPublicKey):
            size = (public_key.key_size + 7) // 8
            return functools.partial(_hotpath.check_signature, public_key.verify, self.parameters, size, None)
        return None  # pragma: no cover - fits() admits only the three key types above


def _eddsa(name: str) -> Algorithm:
    return Algorithm(name=name, kty="OKP", crv="Ed25519", signature_size=64)


def _ecdsa(name: str, crv: str, digest: hashes.HashAlgorithm) -> Algorithm:
    size = 2 * EC_CURVES[crv].coordinate_size
    return Algorithm(name=name, kty="EC", crv=crv, signature_size=size, parameters=(ec.ECDSA(digest),))


def _rsa(name: str, digest: hashes.HashAlgorithm, *, pss: bool) -> Algorithm:
    rsa_padding: padding.AsymmetricPadding = (
        # RFC 7518 §3.5: MGF1 with the same hash, and a salt exactly as long as the hash output.
        padding.PSS(mgf=padding.MGF1(digest), salt_length=digest.digest_size) if pss else padding.PKCS1v15()
    )
    return Algorithm(name=name, kty="RSA", crv=None, signature_size=None, parameters=(rsa_padding, digest))


_EDDSA = _eddsa("EdDSA")

ALGORITHMS: Mapping[str, Algorithm] = types.MappingProxyType(
    {
        "EdDSA": _EDDSA,
        # RFC 9864 fully-specified name; same behaviour, but tokens carry it under its own name.
        "Ed25519": _eddsa("Ed25519"),
        "ES256": _ecdsa("ES256", "P-256", hashes.SHA256()),
        "ES384": _ecdsa("ES384", "P-384", hashes.SHA384()),
        "ES512": _ecdsa("ES512", "P-521", hashes.SHA512()),
        "PS256": _rsa("PS256", hashes.SHA256(), pss=True),
        "PS384": _rsa("PS384", hashes.SHA384(), pss=True),
        "PS512": _rsa("PS512", hashes.SHA512(), pss=True),
        "RS256": _rsa("RS256", hashes.SHA256(), pss=False),
        "RS384": _rsa("RS384", hashes.SHA384(), pss=False),
        "RS512": _rsa("RS512", hashes.SHA512(), pss=False),
    }
)


def normalise_algorithm(name: str) -> str:
    """The canonical name of ``name`` (``Ed25519`` -> ``EdDSA``); ValueError if we do not support it."""
    if name == "Ed25519":
        return _EDDSA.name
    if name in ALGORITHMS:
        return name
    raise ValueError(f"unsupported algorithm {name!r}; supported: {', '.join(sorted(ALGORITHMS))}")
