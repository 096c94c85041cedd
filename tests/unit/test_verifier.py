"""Every verification rule of the contract, one test (at least) each, plus reload and cache behaviour.

Tokens are minted by hand here (JSON, base64url, the algorithm table's ``sign``) so a test can build
exactly the malformed or hostile token it needs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from jwt_trust import errors
from jwt_trust.algorithms import ALGORITHMS
from jwt_trust.keys import b64url_encode, generate_private_key, public_jwk
from jwt_trust.projection import (
    IssuerTrust,
    PolicyTrust,
    content_hash,
    issuer_jwks_key,
    parse_trust_files,
    render_configmap_data,
)
from jwt_trust.verifier import TrustStore

# Every test runs on the C twin and on the Python reference of jwt_trust._hotpath (tests/unit/conftest.py).
pytestmark = pytest.mark.usefixtures("each_hotpath")

NOW = 1_800_000_000
ISS_A = "https://a.example"
ISS_B = "https://b.example"
ALGS = sorted(ALGORITHMS)


def _generate(alg: str) -> Any:
    if ALGORITHMS[alg].kty == "RSA":
        return generate_private_key(alg, rsa_bits=2048)
    return generate_private_key(alg)


@pytest.fixture(scope="module")
def keys() -> dict[str, tuple[Any, dict[str, str]]]:
    """One private key and its public JWK per algorithm (RSA is slow to generate: once per module)."""
    result = {}
    rsa_key = _generate("RS256")  # one RSA key for the six RSA algorithms
    for alg in ALGS:
        private = rsa_key if ALGORITHMS[alg].kty == "RSA" else _generate(alg)
        result[alg] = (private, public_jwk(private.public_key(), alg))
    return result


def _b64json(value: Any) -> str:
    return b64url_encode(json.dumps(value).encode())


def mint(
    private: Any,
    alg: str,
    claims: dict[str, Any] | None = None,
    *,
    kid: str | None = None,
    header: dict[str, Any] | None = None,
    raw_header: bytes | None = None,
    raw_payload: bytes | None = None,
) -> str:
    head: dict[str, Any] = {"alg": alg, "typ": "JWT"}
    if kid is not None:
        head["kid"] = kid
    head.update(header or {})
    body: dict[str, Any] = {"iss": ISS_A, "exp": NOW + 300, "iat": NOW}
    body.update(claims or {})
    h = b64url_encode(raw_header) if raw_header is not None else _b64json(head)
    p = b64url_encode(raw_payload) if raw_payload is not None else _b64json(body)
    signing_input = f"{h}.{p}".encode()
    signature = ALGORITHMS[alg if alg in ALGORITHMS else "ES256"].sign(private, signing_input)
    return f"{h}.{p}.{b64url_encode(signature)}"


def store_for(jwk: dict[str, str], **policy: Any) -> TrustStore:
    policy.setdefault("issuer", ISS_A)
    return TrustStore.from_jwks({"keys": [jwk]}, **policy)


@pytest.fixture
def es(keys: dict[str, tuple[Any, dict[str, str]]]) -> tuple[Any, dict[str, str], TrustStore]:
    private, jwk = keys["ES256"]
    return private, jwk, store_for(jwk)


# --- acceptance ----------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ALGS)
def test_accepts_a_valid_token_for_every_algorithm(keys: dict[str, Any], alg: str) -> None:
    private, jwk = keys[alg]
    store = TrustStore.from_jwks({"keys": [jwk]}, issuer=ISS_A, algorithms=ALGS)
    claims = store.verify(mint(private, alg, {"sub": "x"}, kid=jwk["kid"]), now=NOW)
    assert claims["sub"] == "x"


def test_accepts_a_token_without_kid_by_trying_keys_that_fit_its_alg(keys: dict[str, Any]) -> None:
    store = TrustStore.from_jwks({"keys": [keys["EdDSA"][1], keys["ES256"][1]]}, issuer=ISS_A)
    assert store.verify(mint(keys["ES256"][0], "ES256"), now=NOW)["iss"] == ISS_A


def test_accepts_ed25519_header_with_an_okp_key_that_names_no_alg(keys: dict[str, Any]) -> None:
    private, jwk = keys["EdDSA"]
    bare = {k: v for k, v in jwk.items() if k != "alg"}
    store = TrustStore.from_jwks({"keys": [bare]}, issuer=ISS_A, algorithms=ALGS)
    assert store.verify(mint(private, "Ed25519", kid=jwk["kid"]), now=NOW)["iss"] == ISS_A
    assert store.verify(mint(private, "EdDSA", kid=jwk["kid"]), now=NOW)["iss"] == ISS_A


# --- structure -----------------------------------------------------------------------------------


def test_rejects_a_token_over_the_size_limit_before_parsing(es: Any) -> None:
    _private, _jwk, store = es
    with pytest.raises(errors.TokenTooLarge):
        store.verify("a" * 70_000, now=NOW)


@pytest.mark.parametrize(
    "token",
    ["a.b.c.d.e", "a.b", "abc", '{"payload":"x","signatures":[]}'],
    ids=["jwe", "two-segments", "one-segment", "json-serialization"],
)
def test_rejects_anything_but_a_three_segment_compact_jws(es: Any, token: str) -> None:
    with pytest.raises(errors.MalformedToken):
        es[2].verify(token, now=NOW)


@pytest.mark.parametrize("mangle", ["pad", "plus", "noncanonical"])
def test_rejects_base64url_that_is_not_strict(es: Any, mangle: str) -> None:
    private, jwk, store = es
    h, p, s = mint(private, "ES256", kid=jwk["kid"]).split(".")
    if mangle == "pad":
        p = p + "=" * (-len(p) % 4 or 4)
    elif mangle == "plus":
        s = "+" + s[1:]
    else:
        # "fQ" decodes to "}" with zero spare bits; "fR" carries a set spare bit (same byte, other text).
        h = _b64json({"alg": "ES256", "kid": jwk["kid"]})
        h = h[:-1] + chr(ord(h[-1]) + 1) if len(h) % 4 else h + "B"
    with pytest.raises(errors.MalformedToken):
        store.verify(f"{h}.{p}.{s}", now=NOW)


@pytest.mark.parametrize(
    "raw_header",
    [
        b'{"alg":"ES256","alg":"ES256"}',
        b'{"alg":"ES256","x":NaN}',
        b'\xef\xbb\xbf{"alg":"ES256"}',
        b'["alg","ES256"]',
        b'{"alg":"ES256","x":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        b'{"alg":"ES256","x":"\xff"}',
    ],
    ids=["duplicate-member", "nan", "bom", "not-an-object", "deep-nesting", "not-utf8"],
)
def test_rejects_a_header_that_is_not_a_strict_json_object(es: Any, raw_header: bytes) -> None:
    private, _jwk, store = es
    token = mint(private, "ES256", raw_header=raw_header)
    with pytest.raises(errors.MalformedToken):
        store.verify(token, now=NOW, max_token_bytes=1_000_000)


def test_rejects_a_payload_with_duplicate_claims(es: Any) -> None:
    private, jwk, store = es
    payload = json.dumps({"iss": ISS_A, "exp": NOW + 60})[:-1] + f', "exp": {NOW + 999}}}'
    token = mint(private, "ES256", kid=jwk["kid"], raw_payload=payload.encode())
    with pytest.raises(errors.MalformedToken):
        store.verify(token, now=NOW)


# --- header rules --------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "HS256", "es256"])
def test_rejects_alg_none_and_algorithms_off_the_allow_list(es: Any, alg: str) -> None:
    private, jwk, store = es
    with pytest.raises(errors.DisallowedAlgorithm):
        store.verify(mint(private, alg, kid=jwk["kid"]), now=NOW)


def test_rejects_an_allowed_algorithm_that_the_policy_does_not_list(keys: dict[str, Any]) -> None:
    private, jwk = keys["ES256"]
    store = store_for(jwk, algorithms=["EdDSA"])
    with pytest.raises(errors.DisallowedAlgorithm):
        store.verify(mint(private, "ES256", kid=jwk["kid"]), now=NOW)


def test_rejects_a_header_alg_different_from_the_keys_alg(keys: dict[str, Any]) -> None:
    private, jwk = keys["RS256"]
    store = store_for(jwk)
    with pytest.raises(errors.DisallowedAlgorithm):
        store.verify(mint(private, "PS256", kid=jwk["kid"]), now=NOW)


def test_rejects_eddsa_header_for_a_key_published_as_ed25519(keys: dict[str, Any]) -> None:
    private, jwk = keys["Ed25519"]
    store = TrustStore.from_jwks({"keys": [jwk]}, issuer=ISS_A, algorithms=ALGS)
    with pytest.raises(errors.DisallowedAlgorithm):
        store.verify(mint(private, "EdDSA", kid=jwk["kid"]), now=NOW)


@pytest.mark.parametrize(
    ("extra", "error"),
    [
        ({"crit": ["exp"]}, errors.UnsupportedToken),
        ({"crit": []}, errors.MalformedToken),
        ({"crit": "b64"}, errors.MalformedToken),
        ({"b64": True}, errors.UnsupportedToken),
        ({"cty": "jwt"}, errors.UnsupportedToken),
    ],
    ids=["crit", "empty-crit", "crit-not-list", "b64", "nested-jwt"],
)
def test_rejects_extensions_we_do_not_understand(
    es: Any, extra: dict[str, Any], error: type[Exception]
) -> None:
    private, jwk, store = es
    with pytest.raises(error):
        store.verify(mint(private, "ES256", kid=jwk["kid"], header=extra), now=NOW)


def test_rejects_an_unknown_kid_without_falling_back_to_other_keys(es: Any) -> None:
    private, _jwk, store = es
    with pytest.raises(errors.UnknownKey):
        store.verify(mint(private, "ES256", kid="not-a-trusted-kid"), now=NOW)


def test_ignores_a_key_embedded_in_the_header(es: Any) -> None:
    store = es[2]
    attacker = _generate("ES256")
    attacker_jwk = public_jwk(attacker.public_key(), "ES256")
    token = mint(attacker, "ES256", header={"jwk": attacker_jwk, "jku": "https://evil.example/jwks"})
    with pytest.raises(errors.InvalidSignature):
        store.verify(token, now=NOW)


def test_skips_unusable_keys_at_load_time(keys: dict[str, Any]) -> None:
    private, jwk = keys["ES256"]
    junk = [
        {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA", "kid": "broken"},
        {**keys["EdDSA"][1], "use": "enc"},
        {**keys["ES384"][1], "key_ops": ["encrypt"]},
        {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
        "not-an-object",
    ]
    store = TrustStore.from_jwks({"keys": [*junk, jwk]}, issuer=ISS_A)
    assert store.verify(mint(private, "ES256", kid=jwk["kid"]), now=NOW)["iss"] == ISS_A
    with pytest.raises(errors.UnknownKey):
        store.verify(mint(keys["EdDSA"][0], "EdDSA", kid=keys["EdDSA"][1]["kid"]), now=NOW)


def test_rejects_a_bad_signature(es: Any) -> None:
    private, jwk, store = es
    h, _p, s = mint(private, "ES256", kid=jwk["kid"]).split(".")
    forged = _b64json({"iss": ISS_A, "exp": NOW + 300, "admin": True})
    with pytest.raises(errors.InvalidSignature):
        store.verify(f"{h}.{forged}.{s}", now=NOW)


def test_accepts_typ_case_insensitively_with_application_prefix_implied(es: Any) -> None:
    private, jwk, _store = es
    store = store_for(jwk, typ="at+jwt")
    token = mint(private, "ES256", kid=jwk["kid"], header={"typ": "application/AT+JWT"})
    assert store.verify(token, now=NOW)["iss"] == ISS_A


def test_rejects_a_typ_other_than_the_policys(es: Any) -> None:
    private, jwk, _store = es
    store = store_for(jwk, typ="at+jwt")
    with pytest.raises(errors.InvalidType):
        store.verify(mint(private, "ES256", kid=jwk["kid"]), now=NOW)


# --- claims --------------------------------------------------------------------------------------


def test_requires_exp(es: Any) -> None:
    private, jwk, store = es
    with pytest.raises(errors.MissingClaim):
        store.verify(mint(private, "ES256", {"exp": None}, kid=jwk["kid"]), now=NOW)


@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
@pytest.mark.parametrize("value", [str(NOW + 60), True, [NOW]])
def test_rejects_time_claims_that_are_not_numbers(es: Any, claim: str, value: Any) -> None:
    private, jwk, store = es
    with pytest.raises(errors.MalformedClaim):
        store.verify(mint(private, "ES256", {claim: value}, kid=jwk["kid"]), now=NOW)


def test_rejects_an_expired_token_only_after_the_leeway(es: Any) -> None:
    private, jwk, store = es
    token = mint(private, "ES256", {"exp": NOW}, kid=jwk["kid"])
    assert store.verify(token, now=NOW + 59)["exp"] == NOW
    with pytest.raises(errors.ExpiredToken):
        store.verify(token, now=NOW + 60)
    with pytest.raises(errors.ExpiredToken):
        store.verify(token, now=NOW, leeway=0)


def test_rejects_a_token_not_yet_valid(es: Any) -> None:
    private, jwk, store = es
    with pytest.raises(errors.NotYetValid):
        store.verify(mint(private, "ES256", {"nbf": NOW + 61}, kid=jwk["kid"]), now=NOW)


def test_rejects_a_token_issued_in_the_future(es: Any) -> None:
    private, jwk, store = es
    with pytest.raises(errors.IssuedInFuture):
        store.verify(mint(private, "ES256", {"iat": NOW + 61}, kid=jwk["kid"]), now=NOW)


def test_rejects_an_iss_other_than_the_keys_issuer(es: Any) -> None:
    private, jwk, store = es
    with pytest.raises(errors.InvalidIssuer):
        store.verify(mint(private, "ES256", {"iss": ISS_B}, kid=jwk["kid"]), now=NOW)
    with pytest.raises(errors.InvalidIssuer):
        store.verify(mint(private, "ES256", kid=jwk["kid"]), now=NOW, issuer=ISS_B)


def test_rejects_a_token_signed_by_another_issuers_key(keys: dict[str, Any]) -> None:
    key_a, jwk_a = keys["ES256"]
    _key_b, jwk_b = keys["EdDSA"]
    trust = PolicyTrust(
        policy="p",
        issuers=(
            IssuerTrust(ref="ns/a", issuer=ISS_A, keys=(jwk_a,)),
            IssuerTrust(ref="ns/b", issuer=ISS_B, keys=(jwk_b,)),
        ),
    )
    store = TrustStore.from_trust(trust)
    assert store.verify(mint(key_a, "ES256", {"iss": ISS_A}, kid=jwk_a["kid"]), now=NOW)["iss"] == ISS_A
    with pytest.raises(errors.InvalidIssuer):
        store.verify(mint(key_a, "ES256", {"iss": ISS_B}, kid=jwk_a["kid"]), now=NOW)


def test_rejects_a_token_with_aud_when_no_audience_is_configured(es: Any) -> None:
    private, jwk, store = es
    with pytest.raises(errors.InvalidAudience):
        store.verify(mint(private, "ES256", {"aud": "api"}, kid=jwk["kid"]), now=NOW)


def test_requires_one_of_the_configured_audiences(es: Any) -> None:
    private, jwk, _store = es
    store = store_for(jwk, audiences=["api://orders"])
    good = mint(private, "ES256", {"aud": ["other", "api://orders"]}, kid=jwk["kid"])
    assert store.verify(good, now=NOW)["aud"] == ["other", "api://orders"]
    with pytest.raises(errors.InvalidAudience):
        store.verify(mint(private, "ES256", {"aud": "api://billing"}, kid=jwk["kid"]), now=NOW)
    with pytest.raises(errors.InvalidAudience):
        store.verify(mint(private, "ES256", kid=jwk["kid"]), now=NOW)
    with pytest.raises(errors.InvalidAudience):
        store.verify(good, now=NOW, audience="api://billing")


def test_rejects_an_aud_that_is_not_a_string_or_list_of_strings(es: Any) -> None:
    private, jwk, _store = es
    store = store_for(jwk, audiences=["api"])
    with pytest.raises(errors.MalformedClaim):
        store.verify(mint(private, "ES256", {"aud": ["api", 1]}, kid=jwk["kid"]), now=NOW)


def test_requires_the_policys_and_the_callers_required_claims(es: Any) -> None:
    private, jwk, _store = es
    store = store_for(jwk, required_claims=["sub"])
    with pytest.raises(errors.MissingClaim):
        store.verify(mint(private, "ES256", {"sub": None}, kid=jwk["kid"]), now=NOW)
    token = mint(private, "ES256", {"sub": "me"}, kid=jwk["kid"])
    assert store.verify(token, now=NOW)["sub"] == "me"
    with pytest.raises(errors.MissingClaim):
        store.verify(token, now=NOW, require=["scope"])


def test_rejects_a_token_signed_by_a_revoked_kid(es: Any) -> None:
    private, jwk, _store = es
    store = store_for(jwk, revoked_kids=[jwk["kid"]])
    with pytest.raises(errors.RevokedKey):
        store.verify(mint(private, "ES256", kid=jwk["kid"]), now=NOW)


def test_rejects_a_token_with_a_revoked_jti(es: Any) -> None:
    private, jwk, _store = es
    store = store_for(jwk, revoked_jtis=["j1"])
    assert store.verify(mint(private, "ES256", {"jti": "j2"}, kid=jwk["kid"]), now=NOW)["jti"] == "j2"
    with pytest.raises(errors.RevokedToken):
        store.verify(mint(private, "ES256", {"jti": "j1"}, kid=jwk["kid"]), now=NOW)


def test_verify_signature_checks_the_signature_but_no_claims(es: Any) -> None:
    private, jwk, store = es
    token = mint(private, "ES256", {"exp": 1, "aud": "x"}, kid=jwk["kid"])
    header, payload = store.verify_signature(token)
    assert header["kid"] == jwk["kid"]
    assert json.loads(payload)["exp"] == 1
    h, p, _s = token.split(".")
    with pytest.raises(errors.InvalidSignature):
        store.verify_signature(f"{h}.{p}.{b64url_encode(b'x' * 64)}")


# --- cache ---------------------------------------------------------------------------------------


def test_repeated_token_is_still_rejected_once_expired(es: Any) -> None:
    private, jwk, store = es
    token = mint(private, "ES256", {"exp": NOW + 10}, kid=jwk["kid"])
    assert store.verify(token, now=NOW)["exp"] == NOW + 10
    assert store.verify(token, now=NOW + 1)["exp"] == NOW + 10
    with pytest.raises(errors.ExpiredToken):
        store.verify(token, now=NOW + 100)


def test_returned_claims_cannot_corrupt_the_cache(es: Any) -> None:
    private, jwk, store = es
    token = mint(private, "ES256", kid=jwk["kid"])
    store.verify(token, now=NOW)["exp"] = NOW + 10**9
    with pytest.raises(errors.ExpiredToken):
        store.verify(token, now=NOW + 10**6)


# --- directory -----------------------------------------------------------------------------------


def _publish(root: Path, version: str, files: dict[str, str]) -> None:
    """Mimic the kubelet: write a timestamped dir, then atomically swap the ..data symlink."""
    target = root / version
    target.mkdir()
    for name, content in files.items():
        (target / name).write_text(content)
        if not (root / name).is_symlink():
            (root / name).symlink_to(Path("..data") / name)
    tmp = root / "..data_tmp"
    tmp.symlink_to(version)
    os.replace(tmp, root / "..data")


def _trust(jwk: dict[str, str], **issuer: Any) -> PolicyTrust:
    return PolicyTrust(policy="p", issuers=(IssuerTrust(ref="ns/a", issuer=ISS_A, keys=(jwk,), **issuer),))


def test_directory_store_reloads_on_symlink_swap_and_keeps_last_good_copy(
    keys: dict[str, Any], tmp_path: Path
) -> None:
    key_a, jwk_a = keys["ES256"]
    key_b, jwk_b = keys["EdDSA"]
    _publish(tmp_path, "..v1", render_configmap_data(_trust(jwk_a), revision=1))
    store = TrustStore.from_directory(tmp_path, reload_interval=0)
    assert store.verify(mint(key_a, "ES256", kid=jwk_a["kid"]), now=NOW)["iss"] == ISS_A

    _publish(tmp_path, "..v2", render_configmap_data(_trust(jwk_b), revision=2))
    assert store.verify(mint(key_b, "EdDSA", kid=jwk_b["kid"]), now=NOW)["iss"] == ISS_A
    with pytest.raises(errors.UnknownKey):
        store.verify(mint(key_a, "ES256", kid=jwk_a["kid"]), now=NOW)

    broken = render_configmap_data(_trust(jwk_a), revision=3)
    broken["trust.json"] = "{not json"
    _publish(tmp_path, "..v3", broken)
    assert store.verify(mint(key_b, "EdDSA", kid=jwk_b["kid"]), now=NOW)["iss"] == ISS_A
    assert isinstance(store.last_error, errors.TrustStoreError)


def test_directory_store_refuses_to_start_from_a_malformed_directory(tmp_path: Path) -> None:
    _publish(tmp_path, "..v1", {"trust.json": '{"version": 1}'})
    with pytest.raises(errors.TrustStoreError):
        TrustStore.from_directory(tmp_path)


def test_repeated_token_is_rejected_after_a_reload_revokes_its_kid(
    keys: dict[str, Any], tmp_path: Path
) -> None:
    private, jwk = keys["ES256"]
    _publish(tmp_path, "..v1", render_configmap_data(_trust(jwk), revision=1))
    store = TrustStore.from_directory(tmp_path, reload_interval=0)
    token = mint(private, "ES256", {"jti": "j"}, kid=jwk["kid"])
    assert store.verify(token, now=NOW)["jti"] == "j"
    assert store.verify(token, now=NOW)["jti"] == "j"
    _publish(tmp_path, "..v2", render_configmap_data(_trust(jwk, revoked_kids=(jwk["kid"],)), revision=2))
    with pytest.raises(errors.RevokedKey):
        store.verify(token, now=NOW)


def test_repeated_token_is_rejected_after_a_reload_revokes_its_jti(
    keys: dict[str, Any], tmp_path: Path
) -> None:
    private, jwk = keys["ES256"]
    _publish(tmp_path, "..v1", render_configmap_data(_trust(jwk), revision=1))
    store = TrustStore.from_directory(tmp_path, reload_interval=0)
    token = mint(private, "ES256", {"jti": "j"}, kid=jwk["kid"])
    assert store.verify(token, now=NOW)["jti"] == "j"
    revoked = _trust(jwk, revoked_jtis=(("j", NOW + 300),))
    _publish(tmp_path, "..v2", render_configmap_data(revoked, revision=2))
    with pytest.raises(errors.RevokedToken):
        store.verify(token, now=NOW)


# --- projection ----------------------------------------------------------------------------------


def test_projection_round_trips_through_render_and_parse(keys: dict[str, Any]) -> None:
    trust = PolicyTrust(
        policy="p",
        issuers=(
            IssuerTrust(ref="ns/b", issuer=ISS_B, keys=(keys["EdDSA"][1],)),
            IssuerTrust(ref="ns/a", issuer=ISS_A, keys=(keys["ES256"][1],), revoked_jtis=(("j", 5),)),
        ),
        audiences=("api",),
        typ="at+jwt",
        required_claims=("sub",),
    )
    data = render_configmap_data(trust, revision=7)
    assert issuer_jwks_key("ns/a") == "issuer.ns.a.jwks.json"
    assert set(data) == {"jwks.json", "trust.json", "issuer.ns.a.jwks.json", "issuer.ns.b.jwks.json"}
    parsed, revision = parse_trust_files({k: v.encode() for k, v in data.items()})
    assert revision == 7
    assert parsed.audiences == ("api",)
    assert [i.ref for i in parsed.issuers] == ["ns/a", "ns/b"]
    assert parsed.issuers[0].revoked_jtis == (("j", 5),)
    assert render_configmap_data(parsed, revision=7) == data
    assert content_hash(data) == content_hash(dict(reversed(list(data.items()))))


def test_projection_parse_rejects_a_missing_issuer_jwks_file(keys: dict[str, Any]) -> None:
    data = render_configmap_data(_trust(keys["ES256"][1]), revision=1)
    del data["issuer.ns.a.jwks.json"]
    with pytest.raises(errors.TrustStoreError):
        parse_trust_files({k: v.encode() for k, v in data.items()})


def test_directory_store_rereads_on_an_unknown_kid_at_most_once_per_interval(
    keys: dict[str, Any], tmp_path: Path
) -> None:
    key_a, jwk_a = keys["ES256"]
    key_b, jwk_b = keys["EdDSA"]
    _publish(tmp_path, "..v1", render_configmap_data(_trust(jwk_a), revision=1))
    store = TrustStore.from_directory(tmp_path, reload_interval=3600)
    _publish(tmp_path, "..v2", render_configmap_data(_trust(jwk_b), revision=2))
    assert store.verify(mint(key_b, "EdDSA", kid=jwk_b["kid"]), now=NOW)["iss"] == ISS_A
    # The interval has not passed: this unknown kid must not trigger another read.
    _publish(tmp_path, "..v3", render_configmap_data(_trust(jwk_a), revision=3))
    with pytest.raises(errors.UnknownKey):
        store.verify(mint(key_a, "ES256", kid=jwk_a["kid"]), now=NOW)


def test_typ_argument_replaces_the_policys_typ_for_one_call(es: Any) -> None:
    private, jwk, _store = es
    store = store_for(jwk, typ="at+jwt")
    token = mint(private, "ES256", kid=jwk["kid"], header={"typ": "JWT"})
    assert store.verify(token, now=NOW, typ="jwt")["iss"] == ISS_A
    with pytest.raises(errors.InvalidType):
        store.verify(token, now=NOW)
