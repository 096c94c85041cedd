"""Keys: generation, PEM storage, public JWK export and strict JWK import, and the RFC 7638 ``kid``.

Why it exists: every key that crosses a trust boundary goes through here, so this is where we refuse
anything odd. Guarantees:

- :func:`public_jwk` emits only public members, plus ``kid`` (the RFC 7638 SHA-256 thumbprint), ``alg``
  and ``use: "sig"``.
- :func:`public_key_from_jwk` accepts only Ed25519 (``OKP``), P-256/P-384/P-521 (``EC``, point on the
  curve, coordinates of exactly the curve's length) and RSA (2048 to 16384 bits), and refuses a JWK that
  carries any private member: a leaked private key in a JWKS is a bug we want to see, not use.
- Known-weak keys are refused with :class:`~jwt_trust.errors.WeakKey` (:func:`check_not_weak`, also
  applied to PEM private keys): an RSA modulus with the ROCA fingerprint (CVE-2017-15361), an RSA
  public exponent that is even or outside [65537, 2**256), an Ed25519 point of small order or in a
  non-canonical encoding; an Ed25519 point that is not on the curve is an InvalidKey.
- base64url is strict both ways: no padding, no ``+``/``/``, no whitespace, no non-zero trailing bits, so
  one byte string has exactly one accepted encoding.
- Errors are :class:`~jwt_trust.errors.InvalidKey` (or ValueError for bad arguments) and their messages
  never contain key material.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterable, Mapping

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from .algorithms import ALGORITHMS, EC_CURVES, MIN_RSA_BITS, PrivateKey, PublicKey
from .errors import InvalidKey, WeakKey

__all__ = [
    "PrivateKey",
    "PublicKey",
    "ambiguous_kids",
    "b64url_decode",
    "b64url_encode",
    "check_not_weak",
    "generate_private_key",
    "has_roca_fingerprint",
    "private_key_from_pem",
    "private_key_to_pem",
    "public_jwk",
    "public_key_from_jwk",
    "thumbprint",
]

RSA_SIZES = frozenset({2048, 3072, 4096})
# Far above anything real; stops a hostile JWKS from making us do arithmetic on huge moduli.
MAX_RSA_BITS = 16384
_EC_CURVE_NAMES = " or ".join((", ".join(list(EC_CURVES)[:-1]), list(EC_CURVES)[-1]))  # for messages
PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
# RFC 7638 §3.2: the members that define each key type, and only those, go into the thumbprint.
THUMBPRINT_MEMBERS: Mapping[str, tuple[str, ...]] = {
    "OKP": ("crv", "kty", "x"),
    "EC": ("crv", "kty", "x", "y"),
    "RSA": ("e", "kty", "n"),
}

# --- base64url ----------------------------------------------------------------------------------

_B64URL_RE = re.compile(rb"[A-Za-z0-9_-]*")
# The characters whose unused low bits are zero, by length of the final group (RFC 4648 §3.5).
_CANONICAL_LAST_CHARACTER = {2: frozenset(b"AQgw"), 3: frozenset(b"AEIMQUYcgkosw048")}


def b64url_encode(data: bytes) -> str:
    """base64url without padding (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str | bytes) -> bytes:
    """Decode unpadded base64url, refusing every non-canonical form; raises ValueError.

    Takes bytes too, so that the verifier decodes token segments on its hot path without a copy.
    """
    if isinstance(text, str):
        try:
            text = text.encode("ascii")
        except UnicodeEncodeError:
            raise ValueError("not base64url: only A-Z a-z 0-9 - _ are allowed") from None
    if not isinstance(text, bytes) or _B64URL_RE.fullmatch(text) is None:
        raise ValueError("not base64url: only A-Z a-z 0-9 - _ are allowed, without padding")
    remainder = len(text) % 4
    if remainder == 1:
        raise ValueError("not base64url: impossible length")
    # The last character of a 2- or 3-character group carries 4 or 2 bits that encode nothing; they
    # must be zero, or two different strings would decode to the same bytes.
    if remainder and text[-1] not in _CANONICAL_LAST_CHARACTER[remainder]:
        raise ValueError("not base64url: non-zero trailing bits")
    return base64.urlsafe_b64decode(text + b"=" * (-len(text) % 4))


# --- thumbprint and public JWK ------------------------------------------------------------------


def thumbprint(jwk: Mapping[str, object]) -> str:
    """The RFC 7638 SHA-256 thumbprint of ``jwk``, base64url without padding (our ``kid``)."""
    kty = jwk.get("kty")
    if not isinstance(kty, str) or kty not in THUMBPRINT_MEMBERS:
        raise InvalidKey("cannot compute a thumbprint: kty must be OKP, EC or RSA")
    required: dict[str, str] = {}
    for member in THUMBPRINT_MEMBERS[kty]:
        value = jwk.get(member)
        if not isinstance(value, str):
            raise InvalidKey(f"cannot compute a thumbprint: member {member!r} missing or not a string")
        required[member] = value
    canonical = json.dumps(required, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return b64url_encode(hashlib.sha256(canonical.encode("utf-8")).digest())


def _uint_to_b64url(value: int) -> str:
    """RFC 7518 §2 Base64urlUInt: big-endian, minimum number of octets."""
    return b64url_encode(value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big"))


def public_jwk(key: PrivateKey | PublicKey, alg: str) -> dict[str, str]:
    """The public JWK of ``key`` for algorithm ``alg``, with ``kid``, ``alg`` and ``use: "sig"``.

    ``alg`` is written as given (``Ed25519`` stays ``Ed25519``); the caller normalises beforehand if it
    wants the canonical name. Raises ValueError for an unknown ``alg`` and InvalidKey if the key does
    not fit it.
    """
    if alg not in ALGORITHMS:
        raise ValueError(f"unsupported algorithm {alg!r}")
    public: PublicKey
    if isinstance(key, Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        public = key.public_key()
    else:
        public = key
    if not ALGORITHMS[alg].fits(public):
        raise InvalidKey(f"the key does not fit algorithm {alg}")
    jwk: dict[str, str]
    if isinstance(public, Ed25519PublicKey):
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        jwk = {"kty": "OKP", "crv": "Ed25519", "x": b64url_encode(raw)}
    elif isinstance(public, ec.EllipticCurvePublicKey):
        curve = EC_CURVES[ALGORITHMS[alg].crv or ""]
        numbers = public.public_numbers()
        jwk = {
            "kty": "EC",
            "crv": curve.name,
            "x": b64url_encode(numbers.x.to_bytes(curve.coordinate_size, "big")),
            "y": b64url_encode(numbers.y.to_bytes(curve.coordinate_size, "big")),
        }
    else:
        rsa_numbers = public.public_numbers()
        jwk = {"kty": "RSA", "n": _uint_to_b64url(rsa_numbers.n), "e": _uint_to_b64url(rsa_numbers.e)}
    jwk["kid"] = thumbprint(jwk)
    jwk["alg"] = alg
    jwk["use"] = "sig"
    return jwk


# --- known-weak keys ----------------------------------------------------------------------------

# FIPS 186-5 §A.1.1 bounds for e. Below 65537: e = 3 is what makes Bleichenbacher's 2006 forgery of
# PKCS#1 v1.5 signatures work against lenient parsers; ours is strict, but the keys we accept are
# projected to every consumer, whatever library it uses. Above 2**256 verification gets as costly as a
# private-key operation: a denial of service for a hostile JWKS. Every real issuer uses 65537.
MIN_RSA_EXPONENT = 65537
MAX_RSA_EXPONENT = 2**256 - 1

# ROCA (CVE-2017-15361; Nemec et al., CCS 2017): Infineon's RSALib built primes p = k * M + (65537**a
# mod M), M a primorial that contains every prime up to 167 at every key size, so N mod each of those
# primes r is a power of 65537 mod r. A ROCA modulus always passes; its factors can be found in
# CPU-days to years. A random N passes with probability about 2**-28 (the product of the subgroups'
# shares): one legitimate key in some 240 million would be refused, the trade-off of the published
# fingerprint, which these primes and this test are.
_ROCA_PRIMES = (
    3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73,
    79, 83, 89, 97, 101, 103, 107, 109, 113, 127, 131, 137, 139, 149, 151, 157, 163, 167,
)  # fmt: skip


def _powers_of_65537(prime: int) -> frozenset[int]:
    """The subgroup of the integers mod ``prime`` generated by 65537."""
    powers = {1}
    value = 65537 % prime
    while value not in powers:
        powers.add(value)
        value = value * 65537 % prime
    return frozenset(powers)


_ROCA_SUBGROUPS = tuple((prime, _powers_of_65537(prime)) for prime in _ROCA_PRIMES)


def has_roca_fingerprint(modulus: int) -> bool:
    """Whether ``modulus`` mod each small prime lies in the subgroup generated by 65537 (ROCA)."""
    return all(modulus % prime in powers for prime, powers in _ROCA_SUBGROUPS)


# Ed25519 (RFC 8032 §5.1): p = 2**255 - 19, d = -121665/121666. The points of order 1, 2, 4 and 8 (the
# identity (0, 1), (0, -1), (±sqrt(-1), 0) and four of order 8) by their y, whatever the sign bit of x:
# a key among them verifies forged signatures (for the identity, S = 0 and R = the identity verify
# every message), and a signer cannot have one by accident.
_ED25519_P = 2**255 - 19
_ED25519_D = -121665 * pow(121666, -1, _ED25519_P) % _ED25519_P


def _little_endian(hex_text: str) -> int:
    return int.from_bytes(bytes.fromhex(hex_text), "little")


_ED25519_SMALL_ORDER_Y = frozenset(
    {
        1,
        _ED25519_P - 1,
        0,
        # The two y of the points of order 8 (their encodings, little-endian, sign bit clear).
        _little_endian("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"),
        _little_endian("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"),
    }
)


def _check_ed25519_point(encoded: bytes) -> None:
    value = int.from_bytes(encoded, "little")
    y = value & ((1 << 255) - 1)  # the top bit is the sign of x
    # RFC 8032 §5.1.3: y >= p is not a valid encoding. It would be a second name for a point with
    # y < 19, among them the identity and (0, -1).
    if y >= _ED25519_P:
        raise WeakKey("the Ed25519 public key is not canonically encoded")
    if y in _ED25519_SMALL_ORDER_Y:
        raise WeakKey("the Ed25519 public key is a point of small order")
    # x**2 = (y**2 - 1) / (d * y**2 + 1) must have a root (Euler's criterion); x = 0 only for y = ±1.
    y2 = y * y % _ED25519_P
    x2 = (y2 - 1) * pow(_ED25519_D * y2 + 1, -1, _ED25519_P) % _ED25519_P
    if pow(x2, (_ED25519_P - 1) // 2, _ED25519_P) != 1:
        raise InvalidKey("the point is not on Ed25519")


def check_not_weak(key: PublicKey) -> None:
    """Raise :class:`~jwt_trust.errors.WeakKey` (or InvalidKey) for a key known to be unsafe to trust.

    Off-curve EC points never get this far: cryptography refuses to build them.
    """
    if isinstance(key, Ed25519PublicKey):
        _check_ed25519_point(key.public_bytes(Encoding.Raw, PublicFormat.Raw))
    elif isinstance(key, rsa.RSAPublicKey):
        numbers = key.public_numbers()
        _check_rsa_numbers(numbers.n, numbers.e)


def _check_rsa_numbers(n: int, e: int) -> None:
    if e % 2 == 0 or not MIN_RSA_EXPONENT <= e <= MAX_RSA_EXPONENT:
        raise WeakKey("RSA public exponent must be odd and from 65537 to 2**256 - 1")
    if has_roca_fingerprint(n):
        raise WeakKey("the RSA modulus has the ROCA fingerprint (CVE-2017-15361): it can be factored")


# --- key sets -----------------------------------------------------------------------------------


def ambiguous_kids(keys: Iterable[tuple[str | None, PublicKey]]) -> dict[str, int]:
    """The kids that name more than one different key in one key set, with how many keys each names.

    Why: a verifier picks the key by ``kid``, so a kid that names two keys leaves the choice to the
    order of the set (or to whoever appended the second key). The verifier and the operator's mirror of
    an external set both use this one rule and leave every key of an ambiguous kid out. One key listed
    twice under its kid (once per algorithm, say) is not ambiguous: keys are compared by their public
    key, not by their JWK text.
    """
    found: dict[str, set[bytes]] = {}
    for kid, key in keys:
        if kid is not None:
            found.setdefault(kid, set()).add(
                key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
            )
    return {kid: len(materials) for kid, materials in found.items() if len(materials) > 1}


# --- JWK import ---------------------------------------------------------------------------------


def _member_bytes(jwk: Mapping[str, object], member: str) -> bytes:
    value = jwk.get(member)
    if not isinstance(value, str):
        raise InvalidKey(f"JWK member {member!r} is missing or not a string")
    try:
        return b64url_decode(value)
    except ValueError:
        raise InvalidKey(f"JWK member {member!r} is not strict base64url") from None


def public_key_from_jwk(jwk: Mapping[str, object]) -> PublicKey:
    """The public key of a JWK, refusing anything we do not fully support; raises InvalidKey.

    Only key material is checked here; ``alg``, ``use`` and ``kid`` are the caller's policy. A
    known-weak key raises :class:`~jwt_trust.errors.WeakKey` (:func:`check_not_weak`).
    RSA ``n``/``e`` with a redundant leading zero octet are tolerated (the value is unambiguous and
    some producers emit it).
    """
    if not isinstance(jwk, Mapping):
        raise InvalidKey("a JWK must be a JSON object")
    carried = PRIVATE_MEMBERS.intersection(jwk)
    if carried:
        raise InvalidKey(f"the JWK carries private members {sorted(carried)}; refusing it")
    kty = jwk.get("kty")
    if kty == "OKP":
        if jwk.get("crv") != "Ed25519":
            raise InvalidKey("OKP keys must have crv Ed25519")
        x = _member_bytes(jwk, "x")
        if len(x) != 32:
            raise InvalidKey("an Ed25519 public key is exactly 32 bytes")
        _check_ed25519_point(x)
        return Ed25519PublicKey.from_public_bytes(x)
    if kty == "EC":
        crv = jwk.get("crv")
        if not isinstance(crv, str) or crv not in EC_CURVES:
            raise InvalidKey(f"EC keys must have crv {_EC_CURVE_NAMES}")
        curve = EC_CURVES[crv]
        x_bytes, y_bytes = _member_bytes(jwk, "x"), _member_bytes(jwk, "y")
        if len(x_bytes) != curve.coordinate_size or len(y_bytes) != curve.coordinate_size:
            raise InvalidKey(f"{crv} coordinates must be exactly {curve.coordinate_size} bytes")
        x_int, y_int = int.from_bytes(x_bytes, "big"), int.from_bytes(y_bytes, "big")
        if x_int >= curve.prime or y_int >= curve.prime:
            raise InvalidKey(f"the point is not on {crv}")
        try:
            return ec.EllipticCurvePublicNumbers(x_int, y_int, curve.curve()).public_key()
        except ValueError:
            raise InvalidKey(f"the point is not on {crv}") from None
    if kty == "RSA":
        n = int.from_bytes(_member_bytes(jwk, "n"), "big")
        e = int.from_bytes(_member_bytes(jwk, "e"), "big")
        if not MIN_RSA_BITS <= n.bit_length() <= MAX_RSA_BITS:
            raise InvalidKey(f"RSA modulus must be {MIN_RSA_BITS} to {MAX_RSA_BITS} bits")
        _check_rsa_numbers(n, e)  # before the backend, which has its own (less specific) refusals
        try:
            return rsa.RSAPublicNumbers(e, n).public_key()
        except ValueError:
            raise InvalidKey("invalid RSA public key") from None
    raise InvalidKey("unsupported kty; expected OKP, EC or RSA")


# --- generation and PEM -------------------------------------------------------------------------


def generate_private_key(alg: str, *, rsa_bits: int = 3072) -> PrivateKey:
    """A fresh private key for ``alg``; ValueError for an unknown ``alg`` or an RSA size we do not offer."""
    if alg not in ALGORITHMS:
        raise ValueError(f"unsupported algorithm {alg!r}")
    if rsa_bits not in RSA_SIZES:
        raise ValueError(f"rsa_bits must be one of {sorted(RSA_SIZES)}")
    algorithm = ALGORITHMS[alg]
    if algorithm.kty == "OKP":
        return Ed25519PrivateKey.generate()
    if algorithm.kty == "EC":
        return ec.generate_private_key(EC_CURVES[algorithm.crv or ""].curve())
    return rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)


def private_key_to_pem(key: PrivateKey) -> bytes:
    """PKCS#8 PEM, unencrypted (the Secret holding it is the protection)."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def private_key_from_pem(pem: bytes) -> PrivateKey:
    """Load an unencrypted PEM private key of a type we support; raises InvalidKey."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        # `from None`: the underlying error could describe the PEM's content.
        raise InvalidKey("not a readable unencrypted PEM private key") from None
    if isinstance(key, Ed25519PrivateKey):
        return key
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if not any(isinstance(key.curve, curve.curve) for curve in EC_CURVES.values()):
            raise InvalidKey(f"EC private key is not on {_EC_CURVE_NAMES}")
        return key
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < MIN_RSA_BITS:
            raise InvalidKey(f"RSA private key is smaller than {MIN_RSA_BITS} bits")
        # A signer with a weak key would mint tokens that every verifier refuses.
        check_not_weak(key.public_key())
        return key
    raise InvalidKey("unsupported private key type; expected Ed25519, EC or RSA")
