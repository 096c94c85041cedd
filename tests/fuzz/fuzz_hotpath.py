"""Differential fuzz target (atheris / libFuzzer): the C hot path against its Python reference.

Why: ``jwt_trust._speedups`` re-implements ``jwt_trust._hotpath`` in C, on attacker-controlled bytes.
The property checked here is the twin contract: for every input both return the same value (floats
compared by type and repr, so ``-0.0``/``0.0`` and NaN count; dict order does not) or raise the same
exception class with the same message. Three more properties: the reference only ever raises a
``jwt_trust.errors`` class on token data (anything else is a bug in the reference), nobody raises
``MemoryError``, and, when ``tools/fuzz-c.sh`` runs this file against an AddressSanitizer +
UndefinedBehaviorSanitizer build of the C code, no memory error or undefined behaviour happens.
A broken property raises ``AssertionError`` describing both outcomes; libFuzzer keeps the input.

The first byte of an input picks one of six modes (the rest is the mode's argument):

0. ``split_token`` on raw bytes;
1. ``parse_object`` on raw bytes (part ``"payload"``);
2. ``parse_object`` on near-JSON: a realistic claims object with the fuzzed bytes spliced in as a
   string body, a member name, a value or an array element, optionally rewritten into ``\\uXXXX``
   escapes (surrogates favoured), so that the fuzzer reaches deep into strings, escapes and numbers;
3. ``ecdsa_der`` with a curve's group order (P-256, P-384, and P-521 for DER's long length form),
   the signature optionally built close to the order so that the range checks are exercised;
4. ``check_claims`` on a claims object parsed by the reference (when it parses), some claims replaced
   by values JSON rarely yields (huge ints, ``1e308``, ``-0.0``, bools, lists with non-strings,
   ``None``), with ``now``, ``leeway``, the audiences and the required names picked by input bytes;
5. ``check_signature`` bound as the verifier binds it, for every algorithm of the table (EdDSA, ES256,
   ES384, ES512, PS256 to PS512, RS256 to RS512): the fuzzed bytes as the signature, or a genuine
   signature with the fuzzed bytes XORed into it, truncated or extended, so that both the length and
   range checks and the backend's verify are reached.

Which C build is compared: ``jwt_trust._speedups`` as installed, or, when ``JWT_TRUST_SPEEDUPS_SO``
names a shared object, that file loaded as ``jwt_trust._speedups`` (how ``tools/fuzz-c.sh`` injects
its sanitized build while the rest of ``jwt_trust`` stays the source tree's; it also sets
``JWT_TRUST_PURE_PYTHON=1`` so that no unsanitized build is loaded alongside). Either way the twins
are called by name (``py_*`` against the module's functions), and the files in use are printed at
start-up. Run it with ``bash tools/fuzz-c.sh [SECONDS]``; ``--write-seeds DIR`` writes
a starting corpus. pytest does not collect this file.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import atheris


def _load_speedups() -> ModuleType:
    """The C twin: the build named by JWT_TRUST_SPEEDUPS_SO if set, else the installed one."""
    path = os.environ.get("JWT_TRUST_SPEEDUPS_SO")
    if path:
        spec = importlib.util.spec_from_file_location("jwt_trust._speedups", path)
        if spec is None or spec.loader is None:
            raise SystemExit(f"fuzz_hotpath: cannot load {path} as jwt_trust._speedups")
        module = importlib.util.module_from_spec(spec)
        # Registered before jwt_trust._hotpath is imported, so that its own `from jwt_trust import
        # _speedups` gets this build too.
        sys.modules["jwt_trust._speedups"] = module
        spec.loader.exec_module(module)
        return module
    try:
        return importlib.import_module("jwt_trust._speedups")
    except ImportError as exc:
        raise SystemExit(
            "fuzz_hotpath: jwt_trust._speedups is not built (needs a C compiler at install time: "
            f"pip install -e .): {exc}"
        ) from None


with atheris.instrument_imports(include=["jwt_trust"]):
    from jwt_trust import errors

    speedups = _load_speedups()
    from jwt_trust import _hotpath
    from jwt_trust.algorithms import ALGORITHMS, EC_CURVES
    from jwt_trust.keys import generate_private_key

if os.environ.get("JWT_TRUST_SPEEDUPS_SO") and speedups.__file__ != os.environ["JWT_TRUST_SPEEDUPS_SO"]:
    raise SystemExit(f"fuzz_hotpath: loaded {speedups.__file__}, not JWT_TRUST_SPEEDUPS_SO")
print(f"fuzz_hotpath: C twin {speedups.__file__}", file=sys.stderr)
print(f"fuzz_hotpath: reference {_hotpath.__file__}", file=sys.stderr)

NOW = 1_800_000_000
# P-521's 66-byte halves give DER's long length form (a different code path).
ORDERS: list[bytes] = [curve.order.to_bytes(curve.coordinate_size, "big") for curve in EC_CURVES.values()]

# Mode 5: one key per algorithm family (the RSA key serves the six RSA algorithms), the signature
# check bound as the verifier binds it, and a genuine signature of SIGNED to mutate.
SIGNED = b"eyJhbGciOiJFUzUxMiJ9.eyJzdWIiOiJzIn0"
_RSA = generate_private_key("RS256", rsa_bits=2048)
SIGNATURE_CASES: list[tuple[str, tuple[Any, ...], bytes]] = []
for _alg, _algorithm in ALGORITHMS.items():
    _key = _RSA if _algorithm.kty == "RSA" else generate_private_key(_alg)
    _check = _algorithm.verifier(_key.public_key())
    assert _check is not None
    SIGNATURE_CASES.append((_alg, _check.args, _algorithm.sign(_key, SIGNED)))

TEMPLATE = {
    "iss": "https://a.example",
    "sub": "s",
    "aud": "api",
    "exp": NOW + 60,
    "nbf": NOW - 60,
    "jti": "k",
}

# Values JSON rarely or never produces, swapped into the claims by mode 4.
SPECIAL_VALUES: list[Any] = [
    None, True, False, 0, -1, 0.0, -0.0, 1e308, -1e308, 5e-324, math.inf, -math.inf, math.nan,
    2**53, 2**53 + 1, -(2**53) - 1, 2**63, 2**63 - 1, -(2**63), 2**64, 2**1023, 2**1024, 10**308, 10**309,
    10**400, -(10**400), NOW, NOW - 1, NOW + 1, float(NOW), NOW + 0.5, NOW - 0.5, NOW + 60, float(NOW + 60),
    "1800000060", "", "api", "API", "\ud800", "api\x00", [], ["api"], ["x", "api"], ["api", 1], [None],
    [["api"]], ("api",), {"api": 1}, b"api", 1j,
]  # fmt: skip
NOW_VALUES: list[Any] = [
    NOW, float(NOW), NOW + 0.5, 0, -0.0, 0.0, 1e308, -1e308, math.inf, -math.inf, math.nan, 2**53 + 1,
    2**1023, 10**308, 10**400, True, False, 5e-324,
]  # fmt: skip
LEEWAY_VALUES: list[Any] = [0, 60, -60, 0.5, -0.0, 1e308, -1e308, math.inf, math.nan, True, 2**1024, 10**400]
AUDIENCES: list[tuple[str, ...]] = [(), ("api",), ("x", "api"), ("",), ("API",), ("\ud800",), ("api\x00",)]
REQUIRED: list[tuple[str, ...]] = [
    (),
    ("sub",),
    ("jti", "sub"),
    ("exp",),
    ("aud",),
    ("nbf", "iat"),
    ("\ud800",),
]
CLAIM_NAMES = ("exp", "nbf", "iat", "aud", "sub", "jti")


def _shape(value: Any) -> Any:
    """A comparable picture of a result: floats by repr (so -0.0, inf and NaN count), types kept."""
    if isinstance(value, float):
        return ("float", repr(value))
    if isinstance(value, bool | int | str | bytes | type(None)):
        return (type(value).__name__, value)
    if isinstance(value, list | tuple):
        return (type(value).__name__, [_shape(item) for item in value])
    if isinstance(value, dict):
        # Member names are unique strings, so sorting never compares two values.
        return ("dict", sorted((_shape(k), _shape(v)) for k, v in value.items()))
    return ("unexpected type", type(value).__name__)


def _outcome(function: Callable[..., Any], *args: Any) -> tuple[Any, ...]:
    try:
        return ("returned", _shape(function(*args)))
    except Exception as exc:  # any exception is an outcome to compare
        return ("raised", type(exc), str(exc))


def _compare(name: str, args: tuple[Any, ...], reference_may_fail: bool = False) -> tuple[Any, ...]:
    """Run both twins on ``args``; raise AssertionError unless they agree and behave.

    ``reference_may_fail``: the arguments break the caller's side of the contract (``now`` that no
    float can hold), so an exception outside jwt_trust.errors is the caller's fault, not a bug.
    """
    reference = _outcome(getattr(_hotpath, "py_" + name), *args)
    twin = _outcome(getattr(speedups, name), *args)
    if twin != reference:
        raise AssertionError(f"DISAGREEMENT in {name}{args!a}:\n  C:      {twin!a}\n  Python: {reference!a}")
    for side, result in (("C", twin), ("Python", reference)):
        if result[0] == "raised" and result[1] is MemoryError:
            raise AssertionError(f"{side} {name}{args!a} raised MemoryError")
    ours = reference[0] == "returned" or issubclass(reference[1], errors.JWTTrustError)
    if not ours and not reference_may_fail:
        raise AssertionError(f"REFERENCE BUG: py_{name}{args!a} raised {reference!a}")
    if reference[0] == "returned" and reference[1][0] == "unexpected type":
        raise AssertionError(f"{name}{args!a} returned an unexpected type: {reference!a}")
    return reference


def _escapes(fragment: bytes) -> bytes:
    """The fragment as JSON ``\\uXXXX`` escapes, two bytes a code unit, surrogates made likely."""
    out = []
    for i in range(0, len(fragment) - 1, 2):
        high, low = fragment[i], fragment[i + 1]
        if high & 0xC0 == 0xC0:  # a quarter of the units: the surrogate range D800-DFFF
            high = 0xD8 | (high & 0x07)
        out.append(b"\\u%02x%02X" % (high, low) if i & 2 else b"\\u%02X%02x" % (high, low))
    if len(fragment) & 1:
        out.append(fragment[-1:])  # an odd last byte stays raw: escapes mixed with raw text
    return b"".join(out)


def _near_json(data: bytes) -> bytes:
    """A realistic claims object with ``data[1:]`` spliced in where ``data[0]`` says."""
    flags, fragment = (data[0], data[1:]) if data else (0, b"")
    if flags & 0x08:
        fragment = _escapes(fragment)
    head = b'{"iss":"https://a.example","sub":'
    tail = b',"aud":["api","x"],"exp":1800000060,"jti":"k"}'
    place = flags & 0x07
    if place == 0:  # a string body: escapes, surrogates, raw control characters, UTF-8
        return head + b'"' + fragment + b'"' + tail
    if place == 1:  # a member name (duplicates, escaped names equal to plain ones)
        return head + b'"s","' + fragment + b'":1' + tail
    if place == 2:  # a value: numbers, literals, nested containers
        return head + fragment + tail
    if place == 3:  # an array element
        return head + b'["a",' + fragment + b",null]" + tail
    if place == 4:  # a number with a realistic prefix
        return head + b"-1" + fragment + tail
    if place == 5:  # nested a few levels deep, near the depth limit when repeated
        return head + b'{"a":[{"b":[' + fragment + b"]}]}" + tail
    if place == 6:  # the whole document's end
        return head + b'"s"' + fragment
    return fragment + tail  # the document's start


def _signature(data: bytes, half: int, order: bytes) -> bytes:
    """2 * half bytes from data: raw, or R and S built around the order (equal, one less, one more)."""
    flags, body = (data[0], data[1:]) if data else (0, b"")
    if not flags & 0x01:
        return body
    body = (body + bytes(2 * half))[: 2 * half]
    if not flags & 0x02:
        return body
    # The order with the fuzzed bytes as its tail: values around order - 1, order and order + 1.
    cut = flags >> 2 & 0x3F
    r = (order[: max(0, half - cut)] + body[:half])[:half]
    s = (order[: max(0, half - (cut ^ 0x07))] + body[half:])[:half]
    return r.ljust(half, b"\x00") + s.ljust(half, b"\x00")


def _pick(values: list[Any], byte: int) -> Any:
    return values[byte % len(values)]


def _check_claims(data: bytes) -> None:
    control, raw = data[:8].ljust(8, b"\x00"), data[8:]
    try:
        claims = _hotpath.py_parse_object(raw, "payload")
    except errors.InvalidToken:
        return
    # Up to two claims replaced by special values (byte value 0 keeps the claim as parsed).
    for index in (4, 6):
        name_byte, value_byte = control[index], control[index + 1]
        if name_byte:
            name = CLAIM_NAMES[name_byte % len(CLAIM_NAMES)]
            if name_byte & 0x80:
                claims.pop(name, None)
            else:
                claims[name] = _pick(SPECIAL_VALUES, value_byte)
    now, leeway = _pick(NOW_VALUES, control[0]), _pick(LEEWAY_VALUES, control[1])
    try:
        float(now), float(leeway)
        bad_time = False
    except OverflowError:
        bad_time = True
    args = (claims, now, leeway, _pick(AUDIENCES, control[2]), _pick(REQUIRED, control[3]))
    _compare("check_claims", args, reference_may_fail=bad_time)


def _check_signature(data: bytes) -> None:
    control, body = data[:2].ljust(2, b"\x00"), data[2:]
    _alg, bound, genuine = SIGNATURE_CASES[control[0] % len(SIGNATURE_CASES)]
    if control[1] & 0x01:
        signature = body
    else:
        # The genuine signature with the body XORed in from an offset, then cut or extended.
        offset = control[1] >> 1 & 0x3F
        mutated = bytearray(genuine)
        for index, byte in enumerate(body[:8]):
            if offset + index < len(mutated):
                mutated[offset + index] ^= byte
        signature = (
            bytes(mutated) + body[8:] if control[1] & 0x80 else bytes(mutated)[: len(genuine) - len(body[8:])]
        )
    _compare("check_signature", (*bound, signature, SIGNED))


def test_one_input(data: bytes) -> None:
    """One input: the first byte picks the mode, the rest is its argument."""
    if not data:
        return
    mode, rest = data[0] % 6, data[1:]
    if mode == 0:
        _compare("split_token", (rest,))
    elif mode == 1:
        _compare("parse_object", (rest, "payload"))
    elif mode == 2:
        _compare("parse_object", (_near_json(rest), "payload"))
    elif mode == 3:
        order = ORDERS[rest[0] % len(ORDERS)] if rest else ORDERS[0]
        _compare("ecdsa_der", (_signature(rest[1:], len(order), order), order))
    elif mode == 4:
        _check_claims(rest)
    else:
        _check_signature(rest)


def write_seeds(directory: Path) -> None:
    """A starting corpus: well-formed inputs per mode, so mutation starts from the real formats."""
    directory.mkdir(parents=True, exist_ok=True)
    claims = json.dumps(TEMPLATE, separators=(",", ":")).encode()
    token = b"eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJzIn0.AAEC"
    seeds = {
        "split": b"\x00" + token,
        "split-jwe": b"\x00a.b.c.d.e",
        "parse": b"\x01" + claims,
        "parse-escapes": b"\x01"
        + b'{"a":"\\ud83d\\ude00\\u00e9\\n","b":[1.5e-3,-0,1E400,{}],"c":"\xc3\xa9"}',
        "near-string": b"\x02\x00" + b'caf\xc3\xa9 \\" \\ud800\\udc00',
        "near-escapes": b"\x02\x08" + bytes.fromhex("d83dde0000e90041dc00d800"),
        "near-value": b"\x02\x02" + b"12345678901234567890.5e+10",
        "near-deep": b"\x02\x05" + b"[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]",
        # The corners where a hand-written parser drifts from json: lone and reversed surrogates, a
        # truncated escape, the last integer that fits the C fast path and the first that does not,
        # the longest integer Python converts, brackets inside strings next to the depth limit.
        "corner-surrogates": b"\x01" + b'{"a":"\\udc00\\ud800\\ud800\\udc00\\ud800\\u0041","b":"\\ud800\\"}',
        "corner-ints": b"\x01" + b'{"a":999999999999999999,"b":-99999999999999999,"c":-1000000000000000000}',
        "corner-long-integer": b"\x01" + b'{"a":' + b"9" * 4300 + b"}",
        "corner-depth": b"\x01" + b'{"a":"[[[[\\\\","b":' + b'{"b":' * 30 + b"[1]" + b"}" * 31,
        "der-p256": b"\x03\x00\x01" + bytes(range(64)),
        "der-p384": b"\x03\x01\x03" + bytes(range(96)),
        "der-p521": b"\x03\x02\x01" + bytes(range(132)),
        "claims": b"\x04" + b"\x00\x01\x01\x01\x00\x00\x00\x00" + claims,
        "claims-special": b"\x04" + b"\x02\x02\x02\x02\x01\x18\x04\x0f" + claims,
    }
    for index, (alg, _bound, genuine) in enumerate(SIGNATURE_CASES):
        seeds[f"signature-{alg}"] = b"\x05" + bytes((index, 0)) + bytes(8)  # the genuine signature
        seeds[f"signature-{alg}-raw"] = b"\x05" + bytes((index, 1)) + genuine
    for name, content in seeds.items():
        (directory / f"seed-{name}").write_bytes(content)


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--write-seeds":
        write_seeds(Path(sys.argv[2]))
        return
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
