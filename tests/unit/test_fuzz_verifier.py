"""Bounded, deterministic fuzzing of the verifier and the trust loaders (the CI part of the fuzzing).

The property is the verifier's contract: every input ends in a typed rejection or a valid result, and
nothing else escapes — tokens raise only :class:`~jwt_trust.errors.InvalidToken` subclasses, JWK Sets
and trust directories only :class:`~jwt_trust.errors.TrustStoreError` (or
:class:`~jwt_trust.errors.InvalidKey` for a single JWK). A second property guards against the worst
outcome, a forgery: a token is only ever accepted if it is byte for byte one that a trusted key signed.

Hypothesis runs derandomized and without an example database, so CI sees the same few hundred inputs
every time, in a few seconds. The coverage-guided, long-running counterpart is ``tests/fuzz/`` (run by
``tools/fuzz.sh``); every crash it finds becomes a regression test here or in ``test_attacks.py``.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jwt_trust import _hotpath, errors
from jwt_trust.algorithms import ALGORITHMS
from jwt_trust.keys import b64url_encode, generate_private_key, public_jwk, public_key_from_jwk
from jwt_trust.projection import IssuerTrust, PolicyTrust, parse_trust_files, render_configmap_data
from jwt_trust.verifier import TrustStore

# Every test runs on the C twin and on the Python reference of jwt_trust._hotpath (tests/unit/conftest.py).
pytestmark = pytest.mark.usefixtures("each_hotpath")

NOW = 1_800_000_000
ISS_A = "https://a.example"
ISS_B = "https://b.example"

# Module-level so that Hypothesis examples share them (key generation would dominate the run time).
KEYS: dict[str, tuple[Any, dict[str, str]]] = {}
for _alg in ("ES256", "ES512", "EdDSA", "RS256"):
    _private = generate_private_key(_alg, rsa_bits=2048)
    KEYS[_alg] = (_private, public_jwk(_private.public_key(), _alg))
# The RS256 key published a second time for PS384, under the same kid: one key, not an ambiguous kid.
KEYS["PS384"] = (KEYS["RS256"][0], public_jwk(KEYS["RS256"][0].public_key(), "PS384"))
TRUST = PolicyTrust(
    policy="fuzz",
    issuers=(
        IssuerTrust(
            ref="ns/a",
            issuer=ISS_A,
            keys=(KEYS["ES256"][1], KEYS["EdDSA"][1], KEYS["ES512"][1]),
            revoked_jtis=(("j", NOW),),
        ),
        IssuerTrust(ref="ns/b", issuer=ISS_B, keys=(KEYS["RS256"][1], KEYS["PS384"][1])),
    ),
    audiences=("api",),
    algorithms=("ES256", "ES512", "EdDSA", "RS256", "PS384"),
    required_claims=("sub",),
)


def policy_store() -> TrustStore:
    """A new store of TRUST, built under the hot-path implementation in use now.

    Why not one store for the module: a key binds its signature check (jwt_trust._hotpath's
    check_signature) when it is loaded, and the store caches verified tokens, so a store built at
    import would check every signature with whichever implementation was loaded then, and answer the
    second implementation's run from the first one's cache. each_hotpath picks the implementation per
    test; a store per call makes each example exercise it from the split to the signature.
    """
    return TrustStore.from_trust(TRUST)


FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=150,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
kids = st.sampled_from([jwk["kid"] for _k, jwk in KEYS.values()]) | st.text(max_size=8) | json_values
header_members = st.fixed_dictionaries(
    {},
    optional={
        "alg": st.sampled_from(
            ["ES256", "ES512", "EdDSA", "RS256", "PS256", "PS384", "Ed25519", "none", "HS256", "es256"]
        )
        | json_values,
        "kid": kids,
        "typ": st.sampled_from(["JWT", "at+jwt", "application/jwt"]) | json_values,
        "crit": json_values,
        "b64": json_values,
        "cty": st.sampled_from(["JWT", "json"]) | json_values,
        "jwk": json_values,
        "x5c": json_values,
    },
)
claim_members = st.fixed_dictionaries(
    {},
    optional={
        "iss": st.sampled_from([ISS_A, ISS_B]) | json_values,
        "sub": json_values,
        "aud": st.sampled_from(["api", ["api", "x"], "other"]) | json_values,
        "exp": st.integers(min_value=NOW - 100, max_value=NOW + 100) | json_values,
        "nbf": st.integers(min_value=NOW - 100, max_value=NOW + 100) | json_values,
        "iat": st.integers(min_value=NOW - 100, max_value=NOW + 100) | json_values,
        "jti": st.sampled_from(["j", "k"]) | json_values,
    },
)


def _assert_typed_outcome(token: str | bytes, store: TrustStore | None = None) -> dict[str, Any] | None:
    """Verify in both modes; return the claims if accepted. Any non-InvalidToken error fails the test."""
    store = store or policy_store()
    with contextlib.suppress(errors.InvalidToken):
        store.verify_signature(token)
    try:
        return store.verify(token, now=NOW)
    except errors.InvalidToken:
        return None


@FUZZ
@given(st.binary(max_size=300) | st.text(max_size=300))
def test_arbitrary_bytes_or_text_end_in_a_typed_rejection(token: bytes | str) -> None:
    assert _assert_typed_outcome(token) is None


def _sign(alg: str, header: bytes, payload: bytes) -> str:
    signing_input = f"{b64url_encode(header)}.{b64url_encode(payload)}"
    signature = ALGORITHMS[alg].sign(KEYS[alg][0], signing_input.encode())
    return f"{signing_input}.{b64url_encode(signature)}"


@FUZZ
@given(
    alg=st.sampled_from(sorted(KEYS)),
    header=header_members,
    claims=claim_members,
    mutation=st.none() | st.tuples(st.integers(min_value=0), st.sampled_from(list(".=+/ A_-\n\x00é"))),
)
def test_structured_tokens_are_accepted_only_when_genuine_and_otherwise_typed_rejections(
    alg: str, header: dict[str, Any], claims: dict[str, Any], mutation: tuple[int, str] | None
) -> None:
    token = _sign(alg, json.dumps(header).encode(), json.dumps(claims).encode())
    sent = token
    if mutation is not None:
        position, character = mutation
        position %= len(token)
        sent = token[:position] + character + token[position + 1 :]
    accepted = _assert_typed_outcome(sent)
    if accepted is not None:
        # The only acceptable way in: an untouched token, signed by a trusted key, naming its alg.
        assert sent == token
        assert header.get("alg") == alg
        assert accepted == claims


@FUZZ
@given(st.binary(max_size=200), st.binary(max_size=200), st.sampled_from(sorted(KEYS)))
def test_signed_garbage_json_ends_in_a_typed_rejection(header: bytes, payload: bytes, alg: str) -> None:
    _assert_typed_outcome(_sign(alg, header, payload))
    prefixed = f'{{"alg":"{alg}","kid":"{KEYS[alg][1]["kid"]}"'.encode() + header + b"}"
    _assert_typed_outcome(_sign(alg, prefixed, payload))


jwk_values = st.fixed_dictionaries(
    {},
    optional={
        "kty": st.sampled_from(["EC", "OKP", "RSA", "oct"]) | json_values,
        "crv": st.sampled_from(["P-256", "P-384", "P-521", "Ed25519", "X25519"]) | json_values,
        "x": st.sampled_from(
            [KEYS["ES256"][1]["x"], KEYS["ES512"][1]["x"], KEYS["EdDSA"][1]["x"], "AQ", "AA", ""]
        )
        | json_values,
        "y": st.sampled_from([KEYS["ES256"][1]["y"], KEYS["ES512"][1]["y"], "AA"]) | json_values,
        "n": st.sampled_from([KEYS["RS256"][1]["n"], "AQAB"]) | json_values,
        "e": st.sampled_from(["AQAB", "AA", "Aw"]) | json_values,
        "alg": st.sampled_from(sorted(ALGORITHMS)) | json_values,
        "use": st.sampled_from(["sig", "enc"]) | json_values,
        "key_ops": st.sampled_from([["verify"], ["sign"]]) | json_values,
        "kid": kids,
        "d": json_values,
    },
)


@FUZZ
@given(st.lists(jwk_values | json_values, max_size=4) | json_values)
def test_hostile_jwk_sets_load_or_raise_trust_store_error(keys: Any) -> None:
    for document in ({"keys": keys}, keys, json.dumps({"keys": keys}).encode()):
        try:
            store = TrustStore.from_jwks(document)
        except errors.TrustStoreError:
            continue
        _assert_typed_outcome(_sign("ES256", b'{"alg":"ES256"}', b'{"iss":"x","exp":1800000001}'), store)
    if isinstance(keys, list):
        for jwk in keys:
            with contextlib.suppress(errors.InvalidKey):
                public_key_from_jwk(jwk)


def _mutate_document(document: Any, path: list[Any], value: Any) -> Any:
    """Replace the value at ``path`` (indices taken modulo the container size) by ``value``."""
    if not path or not isinstance(document, dict | list) or not document:
        return value
    head, rest = path[0], path[1:]
    if isinstance(document, dict):
        key = sorted(document)[head % len(document)]
        return {**document, key: _mutate_document(document[key], rest, value)}
    index = head % len(document)
    return [*document[:index], _mutate_document(document[index], rest, value), *document[index + 1 :]]


@FUZZ
@given(
    target=st.sampled_from(["trust.json", "issuer.ns.a.jwks.json", "issuer.ns.b.jwks.json"]),
    path=st.lists(st.integers(min_value=0, max_value=50), max_size=5),
    value=json_values,
    raw=st.none() | st.binary(max_size=100),
)
def test_hostile_trust_directories_load_or_raise_trust_store_error(
    target: str, path: list[int], value: Any, raw: bytes | None
) -> None:
    files = {name: content.encode() for name, content in render_configmap_data(TRUST, revision=1).items()}
    if raw is not None:
        files[target] = raw
    else:
        files[target] = json.dumps(_mutate_document(json.loads(files[target]), path, value)).encode()
    try:
        trust, _revision = parse_trust_files(files)
    except errors.TrustStoreError:
        return
    store = TrustStore.from_trust(trust)
    for alg in ("ES256", "RS256"):
        header = json.dumps({"alg": alg, "kid": KEYS[alg][1]["kid"]}).encode()
        _assert_typed_outcome(_sign(alg, header, b'{"iss":"https://a.example","exp":1800000001}'), store)


# --- regressions: each input that once escaped as an untyped error or was wrongly accepted ----------


def test_a_jwk_whose_alg_is_not_a_string_is_skipped_not_a_type_error() -> None:
    # Found by test_hostile_jwk_sets_load_or_raise_trust_store_error: {"alg": []} raised TypeError
    # (unhashable list) from the allow-list lookup while loading the set.
    jwk = KEYS["ES256"][1]
    store = TrustStore.from_jwks({"keys": [{**jwk, "alg": []}, {**jwk, "alg": {"x": 1}}, jwk]}, issuer=ISS_A)
    claims = json.dumps({"iss": ISS_A, "exp": NOW + 1}).encode()
    token = _sign("ES256", json.dumps({"alg": "ES256", "kid": jwk["kid"]}).encode(), claims)
    assert store.verify(token, now=NOW)["exp"] == NOW + 1


def test_a_trust_directory_whose_jwk_kid_is_not_a_string_is_a_trust_store_error_or_ignored() -> None:
    # Found by test_hostile_trust_directories_load_or_raise_trust_store_error: a JWK with "kid": []
    # in an issuer's JWK Set raised TypeError (unhashable list) from parse_trust_files.
    files = {name: content.encode() for name, content in render_configmap_data(TRUST, revision=1).items()}
    jwks = json.loads(files["issuer.ns.a.jwks.json"])
    jwks["keys"].append({**KEYS["ES256"][1], "kid": []})
    files["issuer.ns.a.jwks.json"] = json.dumps(jwks).encode()
    try:
        trust, _revision = parse_trust_files(files)
    except errors.TrustStoreError:
        return
    assert all(isinstance(jwk.get("kid"), str) for issuer in trust.issuers for jwk in issuer.keys)


def test_signature_only_mode_accepts_a_payload_that_is_not_json() -> None:
    # The signature-only mode verifies "a JWS whose payload is arbitrary bytes"; the claims
    # were parsed for it as well, so a non-JSON payload was rejected as malformed.
    _private, jwk = KEYS["EdDSA"]
    header = json.dumps({"alg": "EdDSA", "kid": jwk["kid"]}).encode()
    token = _sign("EdDSA", header, b"\x00\xffnot json")
    store = policy_store()
    assert store.verify_signature(token) == ({"alg": "EdDSA", "kid": jwk["kid"]}, b"\x00\xffnot json")
    with pytest.raises(errors.MalformedToken):  # served from the cache entry verify_signature left
        store.verify(token, now=NOW)


def test_each_implementation_checks_the_signatures_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    # Regression: the store used to be built at import, so under the "python" variant every signature
    # was still checked by the C twin, and repeated tokens came from the C run's cache.
    calls: list[bytes] = []
    in_use = _hotpath.check_signature  # the implementation each_hotpath selected for this run

    def counting(*args: Any) -> bool:
        calls.append(args[-2])
        return bool(in_use(*args))

    monkeypatch.setattr(_hotpath, "check_signature", counting)
    claims = {"iss": ISS_A, "sub": "s", "aud": "api", "exp": NOW + 60}
    for alg in ("ES256", "ES512", "EdDSA"):
        header = json.dumps({"alg": alg, "kid": KEYS[alg][1]["kid"]}).encode()
        token = _sign(alg, header, json.dumps(claims).encode())
        assert _assert_typed_outcome(token) == claims
    assert len(calls) == 3
