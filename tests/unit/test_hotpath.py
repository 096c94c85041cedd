"""The C twin (jwt_trust._speedups) behaves exactly like the Python reference (jwt_trust._hotpath).

Why: the verifier runs the C code when it is built, but the rules are written, reviewed and mostly
tested in Python. Every function is compared on the same inputs, value for value or exception class
and message for exception class and message: hand-picked edge cases first (the corners of JSON, base64url,
DER and the time rules where implementations usually drift apart), then generated and mutated inputs.
An independent oracle (cryptography's DER encoder, Python's json module) checks the reference too.
"""

from __future__ import annotations

import base64
import functools
import importlib
import json
import math
import os
import sys
from collections.abc import Callable
from typing import Any

import pytest
import vectors
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from hypothesis import given, settings
from hypothesis import strategies as st

from jwt_trust import _hotpath, errors
from jwt_trust.algorithms import ALGORITHMS, EC_CURVES
from jwt_trust.keys import b64url_encode, generate_private_key

speedups: Any = importlib.import_module("jwt_trust._speedups")

ORDERS = [curve.order.to_bytes(curve.coordinate_size, "big") for curve in EC_CURVES.values()]


def _shape(value: Any) -> Any:
    """A comparable picture of a result: floats by repr (so -0.0, inf and NaN count), types kept."""
    if isinstance(value, float):
        return ("float", repr(value))
    if isinstance(value, bool | int | str | bytes | type(None)):
        return (type(value).__name__, value)
    if isinstance(value, list | tuple):
        return (type(value).__name__, [_shape(item) for item in value])
    if isinstance(value, dict):
        return ("dict", sorted((_shape(k), _shape(v)) for k, v in value.items()))
    raise AssertionError(f"unexpected result type {type(value)!r}")


def _outcome(function: Callable[..., Any], *args: Any) -> tuple[Any, ...]:
    try:
        return ("returned", _shape(function(*args)))
    except errors.InvalidToken as exc:
        return ("raised", type(exc).__name__, str(exc))


def _same(name: str, *args: Any) -> tuple[Any, ...]:
    reference = _outcome(getattr(_hotpath, "py_" + name), *args)
    twin = _outcome(getattr(speedups, name), *args)
    assert twin == reference, f"{name}{args!r}: C {twin!r} != Python {reference!r}"
    return reference


# --- parse_object ---------------------------------------------------------------------------------

JSON_CORNERS = [
    b'{"a":1}',
    b' \t\r\n{"a" : 1 , "b" : [ ] } \n',
    b"{}",
    b"[]",
    b"1",
    b'"text"',
    b"null",
    b"",
    b" ",
    b"{",
    b"}",
    b'{"a":1,}',
    b'{"a":1 "b":2}',
    b'{"a" 1}',
    b"{a:1}",
    b"{'a':1}",
    b'{"a":[1,]}',
    b'{"a":[,1]}',
    b'{"a":1}x',
    b'{"a":1}{}',
    b'{"a":1}\x00',
    b'\xef\xbb\xbf{"a":1}',  # a UTF-8 byte order mark
    # duplicates, also spelled differently and nested
    b'{"a":1,"a":1}',
    b'{"a":1,"\\u0061":2}',
    b'{"x":{"a":1,"a":2}}',
    b'{"x":[{"a":1,"a":2}]}',
    b'{"a":{"a":1}}',
    # constants and literals
    b'{"a":NaN}',
    b'{"a":Infinity}',
    b'{"a":-Infinity}',
    b'{"a":true,"b":false,"c":null}',
    b'{"a":True}',
    b'{"a":nul}',
    b'{"a":tru',
    # numbers
    b'{"a":-0}',
    b'{"a":-0.0}',
    b'{"a":0.5e-3}',
    b'{"a":1E+2}',
    b'{"a":1e400}',
    b'{"a":-1e400}',
    b'{"a":1e-400}',
    b'{"a":01}',
    b'{"a":1.}',
    b'{"a":.5}',
    b'{"a":1e}',
    b'{"a":1e+}',
    b'{"a":-}',
    b'{"a":+1}',
    b'{"a":0x10}',
    b'{"a":1_000}',
    b'{"a":123456789012345678}',
    b'{"a":1234567890123456789}',
    b'{"a":-999999999999999999}',
    b'{"a":9223372036854775808}',
    b'{"a":' + b"9" * 4300 + b"}",
    b'{"a":' + b"9" * 4301 + b"}",  # beyond sys.get_int_max_str_digits(): a ValueError in both
    b'{"a":0.' + b"1" * 5000 + b"}",
    # strings
    b'{"a":"\\u00e9\\n\\t\\"\\\\\\/\\b\\f\\r"}',
    b'{"a":"\\ud83d\\ude00"}',  # a surrogate pair: one code point
    b'{"a":"\\ud83d"}',  # lone high surrogate: kept
    b'{"a":"\\ude00"}',  # lone low surrogate: kept
    b'{"a":"\\ud83d\\u0041"}',  # high surrogate then a non-surrogate escape
    b'{"a":"\\ud83d\\ud83d\\ude00"}',
    b'{"a":"\\ud83dx"}',
    b'{"a":"\\ud83d\\uZZZZ"}',
    b'{"a":"\\ud83d\\u12"}',
    b'{"a":"\\u12"}',
    b'{"a":"\\u12G4"}',
    b'{"a":"\\x41"}',
    b'{"a":"\\\'"}',
    b'{"a":"\\',
    b'{"a":"abc',
    b'{"a":"\\"}',
    b'{"a":"tab\there"}',
    b'{"a":"nul\x00"}',
    b'{"a":"del\x7f"}',
    b'{"a":"caf\xc3\xa9"}',
    b'{"a":"\xf0\x9f\x98\x80"}',
    b'{"a":"\xc3"}',  # truncated UTF-8
    b'{"a":"\xc0\xaf"}',  # overlong
    b'{"a":"\xed\xa0\x80"}',  # an encoded surrogate: not UTF-8
    b'{"a":"\xf4\x90\x80\x80"}',  # beyond U+10FFFF
    b'{"a":"x"}\xff',
    b'{"\xc3\xa9":1,"\\u00e9":2}',  # the same name, raw and escaped
    b'{"alg":"ES256","kid":"k","typ":"JWT","iss":"i","sub":"s","aud":"a","exp":1,"nbf":0,"iat":0,"jti":"j"}',
    # nesting: 32 levels are fine, 33 are not; brackets inside strings do not count
    b'{"a":' + b"[" * 31 + b"]" * 31 + b"}",
    b'{"a":' + b"[" * 32 + b"]" * 32 + b"}",
    b'{"a":' + b"[" * 5000 + b"]" * 5000 + b"}",
    b'{"a":"' + b"[" * 100 + b'"}',
    b'{"a":"\\"' + b"[" * 100 + b'"}',
    b'{"a":' + b"[" * 40,
]


@pytest.mark.parametrize("raw", JSON_CORNERS, ids=range(len(JSON_CORNERS)))
def test_parse_object_agrees_on_the_corners_of_json(raw: bytes) -> None:
    _same("parse_object", raw, "payload")


def test_parse_object_accepts_exactly_what_strict_json_accepts_for_well_formed_documents() -> None:
    # The corners above that Python's own json module, with duplicate names refused, takes as an object.
    accepted = [raw for raw in JSON_CORNERS if _same("parse_object", raw, "claims")[0] == "returned"]
    assert len(accepted) > 25
    for raw in accepted:
        assert isinstance(json.loads(raw), dict)


def test_parse_object_names_the_part_and_the_reason() -> None:
    assert _same("parse_object", b"[1]", "header") == (
        "raised",
        "MalformedToken",
        "the header is not a JSON object",
    )
    assert _same("parse_object", b"{", "payload")[2] == "the payload is not a valid UTF-8 JSON object"
    assert _same("parse_object", b"[" * 33, "header")[2] == "the header JSON is nested too deeply"


def test_parse_object_keeps_every_value_the_reference_produces() -> None:
    raw = '{"s":"é\\ud83d\\ude00","n":-12,"f":2.5,"b":[true,false,null],"o":{"x":{}}}'.encode()
    assert speedups.parse_object(raw, "payload") == {
        "s": "é😀",
        "n": -12,
        "f": 2.5,
        "b": [True, False, None],
        "o": {"x": {}},
    }


def test_parse_object_refuses_integers_longer_than_python_allows_in_both() -> None:
    raw = b'{"a":' + b"1" * (sys.get_int_max_str_digits() + 1) + b"}"
    assert _same("parse_object", raw, "payload")[1] == "MalformedToken"


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(
    value=st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=6),
    ensure_ascii=st.booleans(),
    spaced=st.booleans(),
)
def test_parse_object_agrees_on_generated_documents(
    value: dict[str, Any], ensure_ascii: bool, spaced: bool
) -> None:
    separators = (", ", ": ") if spaced else (",", ":")
    raw = json.dumps(value, ensure_ascii=ensure_ascii, separators=separators).encode("utf-8", "surrogatepass")
    _same("parse_object", raw, "payload")


@settings(max_examples=600, deadline=None)
@given(
    value=st.dictionaries(st.text(max_size=8), JSON_VALUES, min_size=1, max_size=6),
    edits=st.lists(
        st.tuples(
            st.integers(min_value=0), st.sampled_from(["insert", "delete", "replace"]), st.binary(max_size=3)
        ),
        min_size=1,
        max_size=4,
    ),
)
def test_parse_object_agrees_on_mutated_documents(
    value: dict[str, Any], edits: list[tuple[int, str, bytes]]
) -> None:
    raw = bytearray(json.dumps(value, separators=(",", ":")).encode("utf-8", "surrogatepass"))
    for position, kind, data in edits:
        at = position % (len(raw) + 1)
        if kind == "insert":
            raw[at:at] = data
        elif kind == "delete":
            del raw[at : at + len(data) + 1]
        else:
            raw[at : at + len(data)] = data
    _same("parse_object", bytes(raw), "payload")


@settings(max_examples=400, deadline=None)
@given(
    st.binary(max_size=64)
    | st.text(alphabet='{}[]",:\\u0123456789.eE+-tfnrlsa \n', max_size=40).map(str.encode)
)
def test_parse_object_agrees_on_arbitrary_bytes(raw: bytes) -> None:
    _same("parse_object", raw, "payload")


# --- split_token ----------------------------------------------------------------------------------

TOKEN_CORNERS = [
    b"a.b.c",
    b"..",
    b"a..",
    b"..c",
    b"a.b",
    b"a.b.c.d",
    b"a.b.c.d.e",
    b"a.b.c.d.e.f",
    b"",
    b".",
    b'{"payload":"x"}',
    b"{.e30.",
    b"e30.e30.",
    b"e30.e30.AA",
    b"e30.e30.AAA",
    b"e30.e30.AAAA",
    b"e30.e30.A",  # a 1-character final group cannot exist
    b"e30.e30.AB",  # spare bits set
    b"e30.e30.AQ",
    b"e30.e30.AAB",
    b"e30.e30.AAE",
    b"e30.e30.AA==",
    b"e30.e30.A+/A",
    b"e30.e30.-_-_",
    b"e30.e30.AA AA",
    b"e30.e30.AA\nA",
    b"e30.e3=.AAAA",
    b"e30.e30\x00.AAAA",
    b"e30.\xff\xfe.AAAA",
    b"e30." + b"A" * 4001 + b".AAAA",
]


@pytest.mark.parametrize("token", TOKEN_CORNERS, ids=range(len(TOKEN_CORNERS)))
def test_split_token_agrees_on_the_corners_of_the_compact_form(token: bytes) -> None:
    _same("split_token", token)


@settings(max_examples=500, deadline=None)
@given(
    st.lists(
        st.text(
            alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_+/= .", max_size=12
        ),
        min_size=1,
        max_size=6,
    ).map(lambda parts: ".".join(parts).encode())
    | st.binary(max_size=40)
)
def test_split_token_agrees_on_generated_tokens(token: bytes) -> None:
    _same("split_token", token)


@given(st.binary(max_size=48), st.binary(max_size=48))
def test_split_token_decodes_what_base64url_encodes(payload: bytes, signature: bytes) -> None:
    token = f"e30.{b64url_encode(payload)}.{b64url_encode(signature)}".encode()
    assert speedups.split_token(token) == (b"e30", payload, signature, token[: token.rindex(b".")])
    _same("split_token", token)


# --- ecdsa_der ------------------------------------------------------------------------------------


def _edge_signatures(order: bytes) -> list[bytes]:
    n = int.from_bytes(order, "big")
    size = len(order)
    values = [0, 1, 2, 0x7F, 0x80, 0xFF, 0x100, n // 2, n - 2, n - 1, n, n + 1, 2 ** (8 * size) - 1]
    values += [2 ** (8 * size - 1) - 1, 2 ** (8 * size - 1), 2 ** (8 * size - 9)]
    encoded = [v.to_bytes(size, "big") for v in values]
    return [r + s for r in encoded for s in encoded] + [
        b"",
        b"\x01" * (2 * size - 1),
        b"\x01" * (2 * size + 1),
    ]


@pytest.mark.parametrize("order", ORDERS, ids=list(EC_CURVES))
def test_ecdsa_der_agrees_and_matches_cryptographys_encoder_on_edge_values(order: bytes) -> None:
    n = int.from_bytes(order, "big")
    size = len(order)
    for signature in _edge_signatures(order):
        outcome = _same("ecdsa_der", signature, order)
        if len(signature) != 2 * size:
            assert outcome == ("returned", ("NoneType", None))
            continue
        r, s = int.from_bytes(signature[:size], "big"), int.from_bytes(signature[size:], "big")
        if 0 < r < n and 0 < s < n:
            assert outcome == ("returned", ("bytes", encode_dss_signature(r, s)))
        else:
            assert outcome == ("returned", ("NoneType", None))


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(ORDERS), st.data())
def test_ecdsa_der_agrees_on_random_signatures(order: bytes, data: st.DataObject) -> None:
    size = len(order)
    signature = data.draw(st.binary(min_size=2 * size, max_size=2 * size) | st.binary(max_size=2 * size + 2))
    outcome = _same("ecdsa_der", signature, order)
    if outcome[1] != ("NoneType", None):
        r, s = int.from_bytes(signature[:size], "big"), int.from_bytes(signature[size:], "big")
        assert outcome[1] == ("bytes", encode_dss_signature(r, s))


# --- check_signature ------------------------------------------------------------------------------

# Every algorithm (Ed25519 is EdDSA's alias); one 2048-bit RSA key for the six RSA algorithms.
_RSA_KEY = generate_private_key("RS256", rsa_bits=2048)
SIGNING_KEYS = {
    alg: _RSA_KEY if ALGORITHMS[alg].kty == "RSA" else generate_private_key(alg)
    for alg in ALGORITHMS
    if alg != "Ed25519"
}


def _bound_checks(alg: str) -> tuple[Any, Any]:
    """The C and Python signature checks bound exactly as algorithms.py binds them for ``alg``."""
    check = ALGORITHMS[alg].verifier(SIGNING_KEYS[alg].public_key())
    assert isinstance(check, functools.partial)
    return functools.partial(speedups.check_signature, *check.args), functools.partial(
        _hotpath.py_check_signature, *check.args
    )


@settings(max_examples=300, deadline=None)
@given(
    alg=st.sampled_from(sorted(SIGNING_KEYS)),
    data=st.binary(max_size=64),
    tamper=st.sampled_from(["none", "flip", "truncate", "extend", "data", "zero", "der"]),
    position=st.integers(min_value=0),
)
def test_check_signature_agrees_and_accepts_only_genuine_signatures(
    alg: str, data: bytes, tamper: str, position: int
) -> None:
    signature = ALGORITHMS[alg].sign(SIGNING_KEYS[alg], data)
    signed = data
    if tamper == "flip":
        at = position % len(signature)
        signature = signature[:at] + bytes((signature[at] ^ 1,)) + signature[at + 1 :]
    elif tamper == "truncate":
        signature = signature[:-1]
    elif tamper == "extend":
        signature += b"\x00"
    elif tamper == "data":
        signed = data + b"x"
    elif tamper == "zero":
        signature = bytes(len(signature))
    elif tamper == "der" and alg.startswith("ES"):
        half = len(signature) // 2
        r, s = int.from_bytes(signature[:half], "big"), int.from_bytes(signature[half:], "big")
        signature = encode_dss_signature(r, s)
    twin, reference = _bound_checks(alg)
    expected = reference(signature, signed)
    assert twin(signature, signed) is expected
    assert expected is (tamper == "none" or (tamper == "der" and not alg.startswith("ES")))


@pytest.mark.parametrize("alg", vectors.CANONICAL)
def test_check_signature_agrees_on_the_wycheproof_style_vectors(alg: str) -> None:
    data = b"eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSJ9"
    check = ALGORITHMS[alg].verifier(vectors.private_key(alg).public_key())
    assert isinstance(check, functools.partial)
    twin = functools.partial(speedups.check_signature, *check.args)
    reference = functools.partial(_hotpath.py_check_signature, *check.args)
    for vector in vectors.signature_vectors(alg, data):
        assert twin(vector.signature, data) is reference(vector.signature, data) is vector.valid, vector.name


# --- check_compact --------------------------------------------------------------------------------


def _compact_token(alg: str, header: dict[str, Any], payload: bytes) -> bytes:
    signing_input = f"{b64url_encode(json.dumps(header).encode())}.{b64url_encode(payload)}"
    signature = ALGORITHMS[alg].sign(SIGNING_KEYS[alg], signing_input.encode())
    return f"{signing_input}.{b64url_encode(signature)}".encode()


def _compact_setup(twin: bool) -> tuple[dict[bytes, Any], Callable[[bytes, Any], Any]]:
    """A header cache holding ES256's header, and a header check that knows EdDSA's and refuses the rest."""
    checks = {alg: _bound_checks(alg)[0 if twin else 1] for alg in ("ES256", "EdDSA", "RS256")}
    known = {
        "ES256": ({"alg": "ES256"}, (("es-key", checks["ES256"]),)),
        # Two candidates, only one of which can pass: the result names the one that did.
        "EdDSA": ({"alg": "EdDSA"}, (("rs-key", checks["RS256"]), ("ed-key", checks["EdDSA"]))),
    }
    headers = {b64url_encode(json.dumps({"alg": "ES256"}).encode()).encode(): known["ES256"]}

    def check_header(header_b64: bytes, context: Any) -> Any:
        assert context == "context"
        header = json.loads(base64.urlsafe_b64decode(header_b64 + b"=="))
        if header.get("alg") not in known:
            raise errors.UnknownKey("no trusted key fits the token's alg")
        return known[header["alg"]]

    return headers, check_header


@settings(max_examples=300, deadline=None)
@given(
    alg=st.sampled_from(["ES256", "EdDSA", "RS256"]),
    payload=st.sampled_from([b'{"sub":"a","exp":1}', b'{"a":1,"a":2}', b"[]", b"\xff", b""]),
    tamper=st.sampled_from(["none", "signature", "segments", "base64"]),
    parse_claims=st.booleans(),
)
def test_check_compact_agrees_on_header_signature_and_claims_outcomes(
    alg: str, payload: bytes, tamper: str, parse_claims: bool
) -> None:
    token = _compact_token(alg, {"alg": alg}, payload)
    if tamper == "signature":
        token = token[:-2] + (b"AA" if token[-2:] != b"AA" else b"BA")
    elif tamper == "segments":
        token += b".x"
    elif tamper == "base64":
        token = token.replace(b".", b".=", 1)
    outcomes = []
    for twin in (True, False):
        headers, check_header = _compact_setup(twin)
        function = speedups.check_compact if twin else _hotpath.py_check_compact
        outcomes.append(_outcome(function, token, headers, check_header, "context", parse_claims))
    assert outcomes[0] == outcomes[1]
    if tamper == "none" and alg != "RS256" and (payload == b'{"sub":"a","exp":1}' or not parse_claims):
        assert outcomes[0][0] == "returned"
        assert outcomes[0][1][1][3] == ("tuple", [("str", {"ES256": "es-key", "EdDSA": "ed-key"}[alg])])


# --- check_claims ---------------------------------------------------------------------------------

NOW = 1_800_000_000.0
CLAIM_VALUES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.sampled_from([10**400, -(10**400), 2**53 + 1, int(NOW), int(NOW) + 60, int(NOW) - 60])
    | st.floats()
    | st.sampled_from([NOW, NOW + 60.0, NOW - 60.0, math.nextafter(NOW, 0), 1e308, -0.0, math.inf, -math.inf])
    | st.text(max_size=4)
    | st.sampled_from(["api", "other", ""])
    | st.lists(st.sampled_from(["api", "other", "", 1, None]), max_size=3)
    | st.dictionaries(st.text(max_size=2), st.integers(), max_size=1)
)
CLAIMS = st.dictionaries(
    st.sampled_from(["exp", "nbf", "iat", "aud", "sub", "jti", "x"]), CLAIM_VALUES, max_size=7
)


@settings(max_examples=1500, deadline=None)
@given(
    claims=CLAIMS,
    now=st.sampled_from([NOW, NOW + 0.5, 0.0]) | st.floats(allow_nan=False, allow_infinity=False, width=32),
    leeway=st.sampled_from([0.0, 60.0, 0.25]),
    audiences=st.lists(st.sampled_from(["api", "other", ""]), max_size=2, unique=True).map(tuple),
    required=st.lists(st.sampled_from(["sub", "jti", "x", "exp"]), max_size=2).map(tuple),
)
def test_check_claims_agrees_on_generated_claims(
    claims: dict[str, Any], now: float, leeway: float, audiences: tuple[str, ...], required: tuple[str, ...]
) -> None:
    _same("check_claims", claims, now, leeway, audiences, required)


CLAIM_CORNERS: list[tuple[dict[str, Any], tuple[str, ...], tuple[str, ...]]] = [
    ({"exp": NOW + 1}, (), ()),
    ({"exp": NOW - 60}, (), ()),  # exactly now - leeway: expired
    ({"exp": NOW - 59.5}, (), ()),
    ({"exp": int(NOW) - 60}, (), ()),
    ({"exp": 10**400}, (), ()),  # an integer no float holds: compared exactly, valid
    ({"exp": -(10**400)}, (), ()),
    ({"exp": 1e400}, (), ()),  # what json makes of 1e400: infinity, refused
    ({"exp": math.nan}, (), ()),
    ({"exp": True}, (), ()),
    ({"exp": "1900000000"}, (), ()),
    ({"exp": None}, (), ()),
    ({}, (), ()),
    ({"exp": NOW + 1, "nbf": NOW + 60}, (), ()),  # exactly now + leeway: valid
    ({"exp": NOW + 1, "nbf": NOW + 60.5}, (), ()),
    ({"exp": NOW + 1, "nbf": 10**400}, (), ()),
    ({"exp": NOW + 1, "nbf": False}, (), ()),
    ({"exp": NOW + 1, "iat": NOW + 61}, (), ()),
    ({"exp": NOW + 1, "iat": [1]}, (), ()),
    ({"exp": NOW + 1, "aud": "api"}, ("api",), ()),
    ({"exp": NOW + 1, "aud": "api"}, (), ()),
    ({"exp": NOW + 1, "aud": ["x", "api"]}, ("api",), ()),
    ({"exp": NOW + 1, "aud": []}, ("api",), ()),
    ({"exp": NOW + 1, "aud": []}, (), ()),
    ({"exp": NOW + 1, "aud": ["api", 1]}, ("api",), ()),
    ({"exp": NOW + 1, "aud": {"api": 1}}, ("api",), ()),
    ({"exp": NOW + 1}, ("api",), ()),
    ({"exp": NOW + 1, "aud": None}, ("api",), ()),
    ({"exp": NOW + 1, "sub": None}, (), ("sub",)),
    ({"exp": NOW + 1, "sub": ""}, (), ("sub",)),
    ({"exp": NOW + 1}, (), ("it's",)),
]


@pytest.mark.parametrize(("claims", "audiences", "required"), CLAIM_CORNERS, ids=range(len(CLAIM_CORNERS)))
def test_check_claims_agrees_on_the_corners_of_the_time_and_audience_rules(
    claims: dict[str, Any], audiences: tuple[str, ...], required: tuple[str, ...]
) -> None:
    _same("check_claims", claims, NOW, 60.0, audiences, required)


def test_check_claims_corners_reach_every_outcome() -> None:
    # Guards the list above against silently testing one path: each rule is hit at least once.
    outcomes = {_same("check_claims", c, NOW, 60.0, a, r)[1] for c, a, r in CLAIM_CORNERS}
    assert outcomes >= {
        ("NoneType", None),
        "ExpiredToken",
        "MissingClaim",
        "MalformedClaim",
        "NotYetValid",
        "IssuedInFuture",
        "InvalidAudience",
    }


def test_check_claims_compares_huge_integers_exactly_instead_of_overflowing() -> None:
    assert speedups.check_claims({"exp": 10**400}, NOW, 60.0, (), ()) is None
    with pytest.raises(errors.ExpiredToken):
        speedups.check_claims({"exp": -(10**400)}, NOW, 60.0, (), ())


def test_the_verifier_uses_the_c_twin_where_it_is_built_unless_told_not_to() -> None:
    # The extension is built here (the import above); a silent fallback would leave it unused.
    forced_pure = os.environ.get("JWT_TRUST_PURE_PYTHON") == "1"
    assert _hotpath.ACCELERATED is not forced_pure
    assert (_hotpath.parse_object is speedups.parse_object) is not forced_pure
