"""Wycheproof-style signature vectors for every algorithm, and known-weak keys, made with cryptography.

We found no installable package that ships Project Wycheproof's vectors, so these are generated
the same way: one genuine signature per algorithm, then every variant that verifiers have been known to
get wrong, each labelled valid or invalid with the reason in its name. Invalid ones: a flipped bit, the
wrong length (ES512's 132 bytes cut or padded, P-256/P-384 sizes on P-521), DER instead of R || S,
r or s zero or not below the group order, a signature by the same key under another algorithm of its
type (RS/PS confusion, another hash, PSS with another salt length or MGF hash), S not below L for
Ed25519. Valid ones: the genuine signature, and for ECDSA the "malleated" (r, n - s), which is a valid
ECDSA signature (JWS does not require low s).

Weak keys: an RSA key whose primes have the ROCA structure (p = k * M + 65537**a mod M), RSA keys with
small exponents, and the encodings of the eight Ed25519 points of small order with their non-canonical
twins, checked against an independent model of the curve (:func:`ed25519_has_small_order`).
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from jwt_trust.algorithms import ALGORITHMS, EC_CURVES, PrivateKey
from jwt_trust.keys import generate_private_key

# Every algorithm under its canonical name (Ed25519 is EdDSA's alias, tested where aliases are).
CANONICAL = ("EdDSA", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512", "RS256", "RS384", "RS512")
ED25519_ORDER = 2**252 + 27742317777372353535851937790883648493  # L


@functools.cache
def private_key(alg: str) -> PrivateKey:
    """One key per algorithm family (RSA shared by the six RSA algorithms: its generation is slow)."""
    family = "RS256" if ALGORITHMS[alg].kty == "RSA" else ("EdDSA" if alg == "Ed25519" else alg)
    if family != alg:
        return private_key(family)
    return generate_private_key(alg, rsa_bits=2048)


@dataclass(frozen=True)
class Vector:
    name: str
    alg: str
    signature: bytes
    valid: bool


def _ecdsa_variants(alg: str, key: ec.EllipticCurvePrivateKey, data: bytes, good: bytes) -> Iterator[Vector]:
    curve = EC_CURVES[ALGORITHMS[alg].crv or ""]
    half, n = curve.coordinate_size, curve.order
    r, s = int.from_bytes(good[:half], "big"), int.from_bytes(good[half:], "big")

    def pair(r_value: int, s_value: int, size: int = half) -> bytes:
        return r_value.to_bytes(size, "big") + s_value.to_bytes(size, "big")

    yield Vector("malleated-s", alg, pair(r, n - s), True)
    yield Vector("der-encoded", alg, encode_dss_signature(r, s), False)
    yield Vector(
        "der-padded-to-length", alg, (encode_dss_signature(r, s) + bytes(2 * half))[: 2 * half], False
    )
    for name, (r_value, s_value) in {
        "r-zero": (0, s),
        "s-zero": (r, 0),
        "r-and-s-zero": (0, 0),
        "r-equals-n": (n, s),
        "s-equals-n": (r, n),
        "r-plus-n": (r + n, s) if r + n < 2 ** (8 * half) else (n + 1, s),
        "s-plus-n": (r, s + n) if s + n < 2 ** (8 * half) else (r, n + 1),
        "r-all-ones": (2 ** (8 * half) - 1, s),
    }.items():
        yield Vector(name, alg, pair(r_value, s_value), False)
    for size in sorted({32, 48, 66} - {half}):
        # Curve-size confusion: r and s written at another curve's width (cut to it when narrower).
        limit = 2 ** (8 * size)
        yield Vector(f"width-of-{size}-byte-curve", alg, pair(r % limit, s % limit, size), False)
    yield Vector("one-byte-short", alg, good[:-1], False)
    yield Vector("one-byte-long", alg, good + b"\x00", False)
    yield Vector("leading-zero-byte", alg, b"\x00" + good, False)
    yield Vector("halves-swapped", alg, good[half:] + good[:half], False)
    # The same data signed with another curve's key and hash (ES256 on P-521's width and so on).
    for other in ("ES256", "ES384", "ES512"):
        if other != alg:
            foreign = ALGORITHMS[other].sign(private_key(other), data)
            yield Vector(f"signed-as-{other}", alg, foreign, False)
    # Another hash on this curve: the JWS size is right, the digest is not.
    other_hash = hashes.SHA256() if alg != "ES256" else hashes.SHA512()
    r2, s2 = decode_dss_signature(key.sign(data, ec.ECDSA(other_hash)))
    yield Vector(f"hash-{other_hash.name}", alg, pair(r2, s2), False)


def _rsa_variants(alg: str, key: rsa.RSAPrivateKey, data: bytes, good: bytes) -> Iterator[Vector]:
    digest = ALGORITHMS[alg].parameters[1]
    for other in ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512"):
        if other != alg:
            # RS/PS confusion and hash confusion with the same key: right length, wrong scheme.
            yield Vector(f"signed-as-{other}", alg, ALGORITHMS[other].sign(key, data), False)
    if alg.startswith("PS"):
        for name, salt in {"salt-empty": 0, "salt-maximal": padding.PSS.MAX_LENGTH, "salt-20": 20}.items():
            if salt != digest.digest_size:
                pss = padding.PSS(mgf=padding.MGF1(digest), salt_length=salt)
                yield Vector(name, alg, key.sign(data, pss, digest), False)
        mgf_sha1 = padding.PSS(mgf=padding.MGF1(hashes.SHA1()), salt_length=digest.digest_size)  # noqa: S303
        yield Vector("mgf1-sha1", alg, key.sign(data, mgf_sha1, digest), False)
    yield Vector("one-byte-short", alg, good[:-1], False)
    yield Vector("leading-zero-byte", alg, b"\x00" + good, False)
    n = key.public_key().public_numbers().n
    yield Vector("zero", alg, bytes(len(good)), False)
    yield Vector("equals-modulus", alg, n.to_bytes(len(good), "big"), False)
    yield Vector(
        "modulus-plus-signature",
        alg,
        ((int.from_bytes(good, "big") + n) % 2 ** (8 * len(good))).to_bytes(len(good), "big"),
        False,
    )


def _eddsa_variants(alg: str, good: bytes) -> Iterator[Vector]:
    s = int.from_bytes(good[32:], "little")
    # RFC 8032 §5.1.7: S must be below L; S + L is the classic malleability.
    yield Vector("s-plus-l", alg, good[:32] + (s + ED25519_ORDER).to_bytes(32, "little"), False)
    yield Vector("s-all-ones", alg, good[:32] + b"\xff" * 32, False)
    yield Vector("one-byte-short", alg, good[:-1], False)
    yield Vector("one-byte-long", alg, good + b"\x00", False)
    yield Vector("zero", alg, bytes(64), False)
    yield Vector("identity-r-zero-s", alg, b"\x01" + bytes(63), False)


def signature_vectors(alg: str, data: bytes) -> list[Vector]:
    """The genuine signature of ``data`` under ``alg`` and its labelled variants."""
    key = private_key(alg)
    good = ALGORITHMS[alg].sign(key, data)
    vectors = [Vector("genuine", alg, good, True)]
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0x01
    vectors.append(Vector("bit-flipped", alg, bytes(flipped), False))
    vectors.append(Vector("empty", alg, b"", False))
    if isinstance(key, ec.EllipticCurvePrivateKey):
        vectors += _ecdsa_variants(alg, key, data, good)
    elif isinstance(key, rsa.RSAPrivateKey):
        vectors += _rsa_variants(alg, key, data, good)
    else:
        vectors += _eddsa_variants(alg, good)
    return vectors


# --- weak RSA keys --------------------------------------------------------------------------------


def _is_probable_prime(candidate: int, rounds: int = 32) -> bool:
    if candidate < 2:
        return False
    for small in (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37):
        if candidate % small == 0:
            return candidate == small
    d, shift = candidate - 1, 0
    while d % 2 == 0:
        d, shift = d // 2, shift + 1
    rng = random.Random(candidate)  # deterministic witnesses: the vectors are reproducible
    for _ in range(rounds):
        x = pow(rng.randrange(2, candidate - 1), d, candidate)
        if x in (1, candidate - 1):
            continue
        for _ in range(shift - 1):
            x = pow(x, 2, candidate)
            if x == candidate - 1:
                break
        else:
            return False
    return True


def _private_from_primes(p: int, q: int, e: int) -> rsa.RSAPrivateKey:
    d = pow(e, -1, math.lcm(p - 1, q - 1))
    numbers = rsa.RSAPrivateNumbers(
        p=p,
        q=q,
        d=d,
        dmp1=d % (p - 1),
        dmq1=d % (q - 1),
        iqmp=pow(q, -1, p),
        public_numbers=rsa.RSAPublicNumbers(e, p * q),
    )
    return numbers.private_key()


@functools.cache
def roca_private_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    """A genuine RSA key built as Infineon's RSALib built them (CVE-2017-15361): p = k * M + 65537**a mod M.

    M is the product of the first primes (here up to 167, as in the fingerprint, which is all the
    structure the test needs); k and a are random. Both primes have that form, so N mod each of those
    primes is a power of 65537.
    """
    rng = random.Random(15361)
    primorial = math.prod(p for p in range(3, 168) if _is_probable_prime(p)) * 2
    # Each prime in [sqrt(2) * 2**(bits/2 - 1), 2**(bits/2)), so that N has exactly ``bits`` bits.
    low, high = math.isqrt(2 ** (bits - 1)) + 1, 2 ** (bits // 2)
    primes: list[int] = []
    while len(primes) < 2:
        base = pow(65537, rng.randrange(1, primorial), primorial)
        candidate = rng.randrange(low // primorial + 1, high // primorial - 1) * primorial + base
        while candidate < high and not (
            _is_probable_prime(candidate) and math.gcd(candidate - 1, 65537) == 1
        ):
            candidate += primorial
        if candidate < high and candidate not in primes:
            primes.append(candidate)
    p, q = primes
    key = _private_from_primes(p, q, 65537)
    assert key.key_size == bits
    return key


@functools.cache
def rsa_private_key_with_exponent(e: int, bits: int = 2048) -> rsa.RSAPrivateKey:
    """A genuine RSA key with public exponent ``e`` (cryptography generates only 3 and 65537)."""
    rng = random.Random(e)
    primes: list[int] = []
    while len(primes) < 2:
        candidate = rng.getrandbits(bits // 2) | 1 << (bits // 2 - 1) | 1 << (bits // 2 - 2) | 1
        if _is_probable_prime(candidate) and math.gcd(candidate - 1, e) == 1:
            primes.append(candidate)
    return _private_from_primes(primes[0], primes[1], e)


# --- Ed25519 points of small order ----------------------------------------------------------------

P = 2**255 - 19
D = -121665 * pow(121666, -1, P) % P
SQRT_MINUS_ONE = pow(2, (P - 1) // 4, P)


def _decode(encoded: bytes) -> tuple[int, int] | None:
    """RFC 8032 §5.1.3 point decoding, but accepting y >= p (reduced): the model of a lax decoder."""
    value = int.from_bytes(encoded, "little")
    y, sign = (value & ((1 << 255) - 1)) % P, value >> 255
    u, v = (y * y - 1) % P, (D * y * y + 1) % P
    x = u * pow(v, 3, P) * pow(u * pow(v, 7, P), (P - 5) // 8, P) % P
    if v * x * x % P == (-u) % P:
        x = x * SQRT_MINUS_ONE % P
    if v * x * x % P != u:
        return None
    if x % 2 != sign:
        x = (-x) % P
    return x, y


def _add(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    (x1, y1), (x2, y2) = a, b
    t = D * x1 * x2 * y1 * y2 % P
    return (x1 * y2 + x2 * y1) * pow(1 + t, -1, P) % P, (y1 * y2 + x1 * x2) * pow(1 - t, -1, P) % P


def ed25519_has_small_order(encoded: bytes) -> bool:
    """Whether the point ``encoded`` names (however encoded) has order dividing 8: [8]P is the identity."""
    point = _decode(encoded)
    if point is None:
        return False
    for _ in range(3):
        point = _add(point, point)
    return point == (0, 1)


def ed25519_small_order_encodings() -> dict[str, bytes]:
    """Every 32-byte encoding of a point of order 1, 2, 4 or 8: canonical, sign bit set, y + p."""
    encodings: dict[str, bytes] = {}
    canonical = {
        "identity": 1,
        "order-2": P - 1,
        "order-4": 0,
        "order-8-a": int.from_bytes(
            bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"), "little"
        ),
        "order-8-b": int.from_bytes(
            bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"), "little"
        ),
    }
    for name, y in canonical.items():
        encodings[name] = y.to_bytes(32, "little")
        encodings[name + "-sign-bit"] = (y | 1 << 255).to_bytes(32, "little")
        if y + P < 2**255:  # a second, non-canonical encoding of the same y
            encodings[name + "-y-plus-p"] = (y + P).to_bytes(32, "little")
            encodings[name + "-y-plus-p-sign-bit"] = (y + P | 1 << 255).to_bytes(32, "little")
    return encodings
