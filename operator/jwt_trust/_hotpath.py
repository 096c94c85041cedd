"""The per-token hot path of verification: the compact form, JSON, the signature call, the claim rules.

These are kept apart from the rest of the verifier because they have two implementations with one
behaviour, error messages included: the Python functions here are the reference, and
``jwt_trust._speedups`` (C, built when a compiler is present at install time) is a faster twin that
is used when it imports. ``JWT_TRUST_PURE_PYTHON=1`` forces the reference. A differential test holds
the two together (tests/unit/test_hotpath.py). Everything that needs the trust store's objects (key
selection, ``iss`` bound to the key's owner, revocation) stays in :mod:`jwt_trust.verifier`.

- :func:`check_compact` runs the per-token rules up to the claims' syntax, in one call: the compact
  form (:func:`py_split_token`: three segments, JSON serialization and JWE named as such, strict
  base64url), the header rules through a cache keyed by the header segment, the key's signature
  check, and :func:`parse_object` on the claims.
- :func:`parse_object` accepts only a UTF-8 JSON object with no duplicate member names at any level,
  no ``NaN``/``Infinity`` and at most :data:`MAX_JSON_DEPTH` levels of nesting.
- :func:`check_signature` calls a public key's ``verify`` as a bool, turning a JWS ECDSA signature
  (``R || S``) into DER first (:func:`py_ecdsa_der`).
- :func:`check_claims` applies the ``exp``/``nbf``/``iat``, ``aud`` and required-claim rules.

All of them raise :class:`~jwt_trust.errors.InvalidToken` subclasses for a token that breaks a rule.
"""

from __future__ import annotations

import binascii
import json
import os
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

from cryptography.exceptions import InvalidSignature as BadSignature

from jwt_trust.errors import (
    ExpiredToken,
    InvalidAudience,
    InvalidSignature,
    IssuedInFuture,
    MalformedClaim,
    MalformedToken,
    MissingClaim,
    NotYetValid,
)

MAX_JSON_DEPTH = 32  # the same limit is compiled into _speedups.c

# base64url -> standard alphabet; "+", "/" and "=" become "!", which strict a2b_base64 refuses.
_FROM_URLSAFE = bytes.maketrans(b"-_+/=", b"+/!!!")
_PADDING = (b"", b"", b"==", b"=")
# The characters whose unused low bits are zero, by length of the final group (RFC 4648 §3.5).
_CANONICAL_LAST: tuple[frozenset[int], ...] = (
    frozenset(),
    frozenset(),
    frozenset(b"AQgw"),
    frozenset(b"AEIMQUYcgkosw048"),
)


def b64decode(segment: bytes, part: str) -> bytes:
    """Strict unpadded base64url, as jwt_trust.keys.b64url_decode, but bytes-only and at C speed."""
    remainder = len(segment) & 3
    # A 1-character final group is impossible; a 2- or 3-character one carries spare bits that must
    # be zero, or two different strings would decode to the same bytes.
    if remainder and (remainder == 1 or segment[-1] not in _CANONICAL_LAST[remainder]):
        raise MalformedToken(f"the {part} is not strict base64url")
    try:
        # strict_mode refuses whitespace and any character outside the alphabet.
        return binascii.a2b_base64(segment.translate(_FROM_URLSAFE) + _PADDING[remainder], strict_mode=True)
    except binascii.Error:
        raise MalformedToken(f"the {part} is not strict base64url") from None


def py_split_token(token: bytes) -> tuple[bytes, bytes, bytes, bytes]:
    """(header segment, payload, signature, signing input) of a compact JWS; the reference version."""
    if token[:1] == b"{":
        raise MalformedToken("JSON serialization is not accepted, only compact JWS")
    parts = token.split(b".")
    if len(parts) != 3:
        if len(parts) == 5:
            raise MalformedToken("the token is a JWE, not a JWS")
        raise MalformedToken("a compact JWS has exactly three segments")
    header_b64, payload_b64, signature_b64 = parts
    payload = b64decode(payload_b64, "payload")
    signature = b64decode(signature_b64, "signature")
    return header_b64, payload, signature, token[: len(header_b64) + 1 + len(payload_b64)]


Candidates = tuple[tuple[Any, Callable[[bytes, bytes], bool]], ...]
HeaderEntry = tuple[dict[str, Any], Candidates]


def py_check_compact(
    token: bytes,
    headers: Mapping[bytes, HeaderEntry],
    check_header: Callable[[bytes, Any], HeaderEntry],
    context: Any,
    parse_claims: bool,
) -> tuple[dict[str, Any], bytes, dict[str, Any] | None, tuple[Any, ...]]:
    """The structure, header, signature and claims-syntax rules of one token, in that order.

    ``headers`` maps a header segment to ``(header, candidates)``, candidates being ``(key, check)``
    pairs; a segment not in it goes to ``check_header(segment, context)`` (which applies the header
    rules, may raise, and returns the entry). Returns ``(header, payload, claims, passed)``: the keys
    whose check accepted the signature (several only on a kid collision) and the parsed claims, or
    None for them when ``parse_claims`` is false.
    """
    header_b64, payload, signature, signing_input = py_split_token(token)
    header, candidates = headers.get(header_b64) or check_header(header_b64, context)
    passed = tuple(key for key, check in candidates if check(signature, signing_input))
    if not passed:
        raise InvalidSignature("the signature does not verify")
    claims = py_parse_object(payload, "payload") if parse_claims else None
    return header, payload, claims, passed


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate member name")
    return result


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


# Built once: json.loads with hooks would construct a new decoder on every call.
_DECODER = json.JSONDecoder(object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant)
# The decoder's C scanner (same hooks), callable without decode()'s two whitespace regex matches.
_SCAN: Callable[[str, int], tuple[Any, int]] = _DECODER.scan_once  # type: ignore[attr-defined]


def _too_deep(raw: bytes) -> bool:
    """Whether ``raw`` nests deeper than MAX_JSON_DEPTH (brackets inside strings do not count)."""
    depth = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x7B, 0x5B):
            depth += 1
            if depth > MAX_JSON_DEPTH:
                return True
        elif byte in (0x7D, 0x5D):
            depth -= 1
    return False


def py_parse_object(raw: bytes, part: str) -> dict[str, Any]:
    """The JSON object in ``raw``, parsed strictly; the reference version."""
    # Counting brackets is C-speed and almost always settles it; only a suspicious document pays for
    # the exact scan.
    if raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH and _too_deep(raw):
        raise MalformedToken(f"the {part} JSON is nested too deeply")
    try:
        # A BOM survives decoding as U+FEFF, which the JSON scanner rejects.
        text = raw.decode("utf-8")
        try:
            # The scanner alone, when the document fills the text exactly (the usual, compact case);
            # anything else (surrounding whitespace, trailing data) goes through the full decoder.
            value, end = _SCAN(text, 0)
        except StopIteration:
            end = -1
        if end != len(text):
            value = _DECODER.decode(text)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise MalformedToken(f"the {part} is not a valid UTF-8 JSON object") from None
    if type(value) is not dict:
        raise MalformedToken(f"the {part} is not a JSON object")
    return value


def py_ecdsa_der(signature: bytes, order: bytes) -> bytes | None:
    """DER ``SEQUENCE { r, s }`` of a JWS ``R || S``, or None unless both are in ``[1, order - 1]``.

    ``order`` is the curve's group order, big-endian, as long as R and S each are (RFC 7518 §3.4);
    a signature of any other length (DER included) is None.
    """
    half = len(order)
    if len(signature) != 2 * half:
        return None
    r, s = signature[:half], signature[half:]
    # Equal-length big-endian byte strings compare like the numbers they encode. A zero or
    # out-of-range r/s is never valid; refusing it here keeps "psychic signature" bugs
    # (CVE-2022-21449) out whatever the backend does.
    zero = bytes(half)
    if not (zero < r < order and zero < s < order):
        return None
    body = _der_integer(r) + _der_integer(s)  # at most 2 * 69 bytes: a one-octet length suffices
    return b"\x30" + _der_length(len(body)) + body


def py_check_signature(  # noqa: PLR0917 - positional, like the partials built in algorithms.py
    verify: Callable[..., None],
    extra: tuple[Any, ...],
    size: int,
    order: bytes | None,
    signature: bytes,
    data: bytes,
) -> bool:
    """Whether ``verify(signature, data, *extra)`` (a cryptography public key's verify) accepts.

    With ``order`` (ECDSA) the JWS ``R || S`` is turned into DER first (:func:`ecdsa_der`); otherwise the
    signature must be exactly ``size`` bytes. Never raises for a bad signature: False.
    """
    if order is not None:
        encoded = py_ecdsa_der(signature, order)
        if encoded is None:
            return False
    elif len(signature) != size:
        return False
    else:
        encoded = signature
    try:
        verify(encoded, data, *extra)
    except (BadSignature, ValueError):  # ValueError: (RSA) a signature the backend cannot parse
        return False
    return True


def _der_integer(value: bytes) -> bytes:
    """A DER INTEGER holding the unsigned big-endian ``value`` (non-zero, at most 66 bytes)."""
    value = value.lstrip(b"\x00")
    if value[0] & 0x80:
        value = b"\x00" + value
    return b"\x02" + bytes((len(value),)) + value


def _der_length(length: int) -> bytes:
    # P-521's 66-byte halves make the sequence body longer than 127 octets: long form.
    return bytes((length,)) if length < 0x80 else bytes((0x81, length))


def _finite_number(value: Any, name: str) -> None:
    """Refuse anything but a finite JSON number. json yields exactly int or float for numbers (and
    bool, a subclass of int, for true/false), so exact type checks are enough; 1e400 parses as
    infinity, and a token that never expires is not a number we accept."""
    kind = type(value)
    if not (kind is int or (kind is float and -_INFINITY < value < _INFINITY)):
        raise MalformedClaim(f"{name} must be a finite number")


_INFINITY = float("inf")


def py_check_claims(
    claims: dict[str, Any],
    now: float,
    leeway: float,
    audiences: tuple[str, ...],
    required: tuple[str, ...],
) -> None:
    """The time, audience and required-claim rules; the reference version.

    Valid iff ``now < exp + leeway``, ``nbf <= now + leeway`` and ``iat <= now + leeway``; ``aud``
    (a string or a list of strings) names one of ``audiences``, and is present exactly when
    ``audiences`` is not empty; every name in ``required`` is present and not null.
    """
    now, leeway = float(now), float(leeway)
    get = claims.get
    exp = get("exp")
    if exp is None:
        raise MissingClaim("the token has no exp claim")
    _finite_number(exp, "exp")
    # The token's numbers are only ever compared, never added to: Python compares int and float
    # exactly, whereas exp + leeway would overflow for an integer beyond a float's range.
    if not exp > now - leeway:
        raise ExpiredToken("the token has expired")
    latest = now + leeway
    nbf = get("nbf")
    if nbf is not None:
        _finite_number(nbf, "nbf")
        if nbf > latest:
            raise NotYetValid("the token is not valid yet (nbf)")
    iat = get("iat")
    if iat is not None:
        _finite_number(iat, "iat")
        if iat > latest:
            raise IssuedInFuture("the token was issued in the future (iat)")

    aud = get("aud")
    if aud is not None:
        if type(aud) is str:
            aud = [aud]
        elif type(aud) is not list or not all(type(a) is str for a in aud):
            raise MalformedClaim("aud must be a string or a list of strings")
        if not audiences:
            raise InvalidAudience("the token has aud but no audience is configured")
        if not any(a in audiences for a in aud):
            raise InvalidAudience("aud does not contain an accepted audience")
    elif audiences:
        raise InvalidAudience("the token has no aud but an audience is required")

    for name in required:
        if get(name) is None:
            raise MissingClaim(f"the token has no {name!r} claim")


# The implementations the verifier calls. split_token and ecdsa_der are building blocks of
# check_compact and check_signature; their C twins are exported for the differential tests only.
parse_object: Callable[[bytes, str], dict[str, Any]] = py_parse_object
check_signature: Callable[[Callable[..., None], tuple[Any, ...], int, bytes | None, bytes, bytes], bool]
check_signature = py_check_signature
check_claims: Callable[[dict[str, Any], float, float, tuple[str, ...], tuple[str, ...]], None]
check_claims = py_check_claims
check_compact: Callable[
    [bytes, Mapping[bytes, HeaderEntry], Callable[[bytes, Any], HeaderEntry], Any, bool],
    tuple[dict[str, Any], bytes, dict[str, Any] | None, tuple[Any, ...]],
]
check_compact = py_check_compact
ACCELERATED = False
if os.environ.get("JWT_TRUST_PURE_PYTHON") != "1":
    try:
        from jwt_trust import _speedups
    except ImportError:  # no compiler at install time: the reference is complete on its own
        pass
    else:
        parse_object = _speedups.parse_object
        check_signature = _speedups.check_signature
        check_claims = _speedups.check_claims
        check_compact = _speedups.check_compact
        ACCELERATED = True
