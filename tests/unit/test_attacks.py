"""Known attacks on JWT verifiers, one test (or one parametrized family) per attack, named after it.

Each test builds the hostile token byte by byte, so it shows exactly what an attacker would send, and
asserts the specific :class:`~jwt_trust.errors.InvalidToken` subclass the verifier must raise: a
rejection for the wrong reason would hide a rule that no longer runs. The rules themselves are in
docs/architecture.md, "Verification rules".
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.x509.oid import NameOID

from jwt_trust import errors
from jwt_trust.algorithms import ALGORITHMS, EC_CURVES
from jwt_trust.keys import b64url_encode, generate_private_key, public_jwk
from jwt_trust.projection import IssuerTrust, PolicyTrust, render_configmap_data
from jwt_trust.verifier import TrustStore

# Every test runs on the C twin and on the Python reference of jwt_trust._hotpath (tests/unit/conftest.py).
pytestmark = pytest.mark.usefixtures("each_hotpath")

NOW = 1_800_000_000
ISS_A = "https://a.example"
ISS_B = "https://b.example"
ALL_ALGS = sorted(ALGORITHMS)
EC_ALGS = ["ES256", "ES384", "ES512"]
RSA_ALGS = ["PS256", "PS384", "PS512", "RS256", "RS384", "RS512"]


@pytest.fixture(scope="module")
def keys() -> dict[str, tuple[Any, dict[str, str]]]:
    """One key per algorithm (RSA is slow to generate: once per module, shared by the RSA algorithms)."""
    result = {}
    for alg in ("EdDSA", *EC_ALGS, "RS256"):
        private = generate_private_key(alg, rsa_bits=2048)
        result[alg] = (private, public_jwk(private.public_key(), alg))
    for alg in RSA_ALGS:
        result[alg] = (result["RS256"][0], public_jwk(result["RS256"][0].public_key(), alg))
    return result


def _segment(value: Any) -> str:
    return b64url_encode(json.dumps(value).encode())


def _token(
    private: Any,
    alg: str,
    *,
    kid: str | None = None,
    header: dict[str, Any] | None = None,
    claims: dict[str, Any] | None = None,
    raw_header: bytes | None = None,
    raw_payload: bytes | None = None,
) -> str:
    """A token signed by ``private`` with the real algorithm ``alg`` (the header may claim anything)."""
    head: dict[str, Any] = {"alg": alg, "typ": "JWT"}
    if kid is not None:
        head["kid"] = kid
    head.update(header or {})
    body: dict[str, Any] = {"iss": ISS_A, "exp": NOW + 300, "iat": NOW}
    body.update(claims or {})
    h = b64url_encode(raw_header) if raw_header is not None else _segment(head)
    p = b64url_encode(raw_payload) if raw_payload is not None else _segment(body)
    signature = ALGORITHMS[alg].sign(private, f"{h}.{p}".encode())
    return f"{h}.{p}.{b64url_encode(signature)}"


def _store(*jwks: dict[str, str], **policy: Any) -> TrustStore:
    policy.setdefault("issuer", ISS_A)
    policy.setdefault("algorithms", ALL_ALGS)
    return TrustStore.from_jwks({"keys": list(jwks)}, **policy)


def _two_issuers(jwk_a: dict[str, str], jwk_b: dict[str, str], **issuer_a: Any) -> TrustStore:
    return TrustStore.from_trust(
        PolicyTrust(
            policy="p",
            issuers=(
                IssuerTrust(ref="ns/a", issuer=ISS_A, keys=(jwk_a,), **issuer_a),
                IssuerTrust(ref="ns/b", issuer=ISS_B, keys=(jwk_b,)),
            ),
            algorithms=tuple(ALL_ALGS),
        )
    )


# --- algorithm confusion -------------------------------------------------------------------------


def _public_forms(private: Any, jwk: dict[str, str]) -> dict[str, bytes]:
    """Every byte string an attacker might guess a confused verifier uses as the HMAC secret."""
    public = private.public_key()
    return {
        "pem": public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        "der": public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        "jwk-json": json.dumps(jwk).encode(),
        "jwk-json-compact": json.dumps(jwk, separators=(",", ":"), sort_keys=True).encode(),
    }


@pytest.mark.parametrize("hmac_alg", ["HS256", "HS384", "HS512"])
@pytest.mark.parametrize("key_alg", ["RS256", "PS512", "ES256", "ES512", "EdDSA"])
def test_algorithm_confusion_hmac_signed_with_the_public_key_is_rejected(
    keys: dict[str, Any], hmac_alg: str, key_alg: str
) -> None:
    private, jwk = keys[key_alg]
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[hmac_alg]
    # Even a policy that (wrongly) lists HMAC must not verify with an asymmetric key.
    store = _store(jwk, algorithms=[hmac_alg, key_alg])
    for secret in _public_forms(private, jwk).values():
        for kid in (jwk["kid"], None):
            head = {"alg": hmac_alg, "typ": "JWT", **({"kid": kid} if kid else {})}
            signing_input = f"{_segment(head)}.{_segment({'iss': ISS_A, 'exp': NOW + 300})}"
            mac = hmac.new(secret, signing_input.encode(), digest).digest()
            with pytest.raises(errors.DisallowedAlgorithm):
                store.verify(f"{signing_input}.{b64url_encode(mac)}", now=NOW)


def test_algorithm_confusion_an_hmac_key_in_the_jwks_is_never_loaded(keys: dict[str, Any]) -> None:
    private, jwk = keys["ES256"]
    secret = b"attacker-chosen-secret"
    oct_key = {"kty": "oct", "k": b64url_encode(secret), "kid": "hmac", "alg": "HS256"}
    store = _store(oct_key, jwk, algorithms=["HS256", "ES256"])
    signing_input = f"{_segment({'alg': 'HS256', 'kid': 'hmac'})}.{_segment({'iss': ISS_A, 'exp': NOW + 1})}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    with pytest.raises(errors.DisallowedAlgorithm):
        store.verify(f"{signing_input}.{b64url_encode(mac)}", now=NOW)
    assert store.verify(_token(private, "ES256", kid=jwk["kid"]), now=NOW)["iss"] == ISS_A


@pytest.mark.parametrize(
    ("header_alg", "key_alg"),
    [
        ("ES384", "ES256"),
        ("ES256", "ES384"),
        ("EdDSA", "ES256"),
        ("ES256", "EdDSA"),
        ("PS256", "RS256"),
        # Curve-size confusion: ES512 names P-521 only, and P-521 keys verify nothing else.
        ("ES512", "ES256"),
        ("ES512", "ES384"),
        ("ES256", "ES512"),
        ("ES384", "ES512"),
        ("EdDSA", "ES512"),
        ("ES512", "RS512"),
        # RS/PS and hash confusion with one RSA key.
        ("RS256", "PS256"),
        ("PS384", "RS384"),
        ("RS512", "PS512"),
        ("RS384", "RS256"),
        ("RS256", "RS512"),
        ("PS512", "PS256"),
        ("PS256", "PS384"),
    ],
)
def test_algorithm_confusion_between_asymmetric_algorithms_is_rejected(
    keys: dict[str, Any], header_alg: str, key_alg: str
) -> None:
    private, jwk = keys[key_alg]
    bare = {k: v for k, v in jwk.items() if k != "alg"}  # even a key that names no alg
    store = _store(bare)
    head = _segment({"alg": header_alg, "kid": jwk["kid"]})
    signing_input = f"{head}.{_segment({'iss': ISS_A, 'exp': NOW + 300})}"
    signature = ALGORITHMS[key_alg].sign(private, signing_input.encode())
    # A key that names no alg fits every RSA scheme, so there the signature check is what refuses.
    same_key_type = header_alg in RSA_ALGS and key_alg in RSA_ALGS
    with pytest.raises(errors.InvalidSignature if same_key_type else errors.DisallowedAlgorithm):
        store.verify(f"{signing_input}.{b64url_encode(signature)}", now=NOW)


# --- alg none ------------------------------------------------------------------------------------


@pytest.mark.parametrize("spelling", ["none", "None", "NONE", "nOnE", "none ", " none", "none\u0000"])
@pytest.mark.parametrize("signature", ["", "AAAA"], ids=["empty-signature", "with-signature"])
def test_alg_none_in_every_spelling_is_rejected_even_when_listed(
    keys: dict[str, Any], spelling: str, signature: str
) -> None:
    _private, jwk = keys["ES256"]
    store = _store(jwk, algorithms=["none", "None", "NONE", "nOnE", "ES256"])
    for kid in (jwk["kid"], None):
        head = {"alg": spelling, "typ": "JWT", **({"kid": kid} if kid else {})}
        token = f"{_segment(head)}.{_segment({'iss': ISS_A, 'exp': NOW + 300})}.{signature}"
        with pytest.raises(errors.DisallowedAlgorithm):
            store.verify(token, now=NOW)
        with pytest.raises(errors.DisallowedAlgorithm):
            store.verify_signature(token)


def test_alg_none_without_a_signature_segment_is_rejected(keys: dict[str, Any]) -> None:
    store = _store(keys["ES256"][1])
    token = f"{_segment({'alg': 'none'})}.{_segment({'iss': ISS_A, 'exp': NOW + 300})}"
    with pytest.raises(errors.MalformedToken):
        store.verify(token, now=NOW)


def test_missing_or_non_string_alg_is_rejected(keys: dict[str, Any]) -> None:
    private, jwk = keys["ES256"]
    store = _store(jwk)
    for alg in (None, 0, ["ES256"], {"name": "ES256"}):
        raw = json.dumps({"kid": jwk["kid"], **({"alg": alg} if alg is not None else {})}).encode()
        h = b64url_encode(raw)
        p = _segment({"iss": ISS_A, "exp": NOW + 300})
        signature = ALGORITHMS["ES256"].sign(private, f"{h}.{p}".encode())
        with pytest.raises(errors.DisallowedAlgorithm):
            store.verify(f"{h}.{p}.{b64url_encode(signature)}", now=NOW)


# --- ECDSA signature encodings -------------------------------------------------------------------


def _resign(token: str, signature: bytes) -> str:
    h, p, _s = token.split(".")
    return f"{h}.{p}.{b64url_encode(signature)}"


@pytest.mark.parametrize("alg", EC_ALGS)
def test_ecdsa_psychic_signature_r_s_zero_is_rejected(keys: dict[str, Any], alg: str) -> None:
    private, jwk = keys[alg]
    store = _store(jwk)
    size = ALGORITHMS[alg].signature_size or 0
    order = EC_CURVES[ALGORITHMS[alg].crv or ""].order.to_bytes(size // 2, "big")
    token = _token(private, alg, kid=jwk["kid"])
    for forged in (bytes(size), order + order, order + bytes(size // 2), bytes(size // 2) + order):
        with pytest.raises(errors.InvalidSignature):
            store.verify(_resign(token, forged), now=NOW)


@pytest.mark.parametrize("alg", EC_ALGS)
def test_ecdsa_der_encoded_signature_is_rejected(keys: dict[str, Any], alg: str) -> None:
    private, jwk = keys[alg]
    store = _store(jwk)
    token = _token(private, alg, kid=jwk["kid"])
    raw = base64.urlsafe_b64decode(token.split(".")[2] + "==")
    half = len(raw) // 2
    der = encode_dss_signature(int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big"))
    assert store.verify(token, now=NOW)["iss"] == ISS_A  # the same signature in JWS form is good
    with pytest.raises(errors.InvalidSignature):
        store.verify(_resign(token, der), now=NOW)
    # A DER signature padded or cut to the JWS length is still not R || S.
    padded = (der + bytes(len(raw)))[: len(raw)]
    with pytest.raises(errors.InvalidSignature):
        store.verify(_resign(token, padded), now=NOW)


@pytest.mark.parametrize("alg", ["EdDSA", *EC_ALGS, *RSA_ALGS])
def test_signature_of_the_wrong_length_is_rejected(keys: dict[str, Any], alg: str) -> None:
    private, jwk = keys[alg]
    store = _store(jwk)
    token = _token(private, alg, kid=jwk["kid"])
    good = base64.urlsafe_b64decode(token.split(".")[2] + "==")
    for forged in (b"", good[:-1], good + b"\x00", b"\x00" + good, good * 2):
        with pytest.raises(errors.InvalidSignature):
            store.verify(_resign(token, forged), now=NOW)


def test_signature_over_another_header_is_rejected(keys: dict[str, Any]) -> None:
    private, jwk = keys["EdDSA"]
    store = _store(jwk)
    token = _token(private, "EdDSA", kid=jwk["kid"])
    _h, p, s = token.split(".")
    swapped = _segment({"alg": "EdDSA", "kid": jwk["kid"], "typ": "at+jwt"})
    with pytest.raises(errors.InvalidSignature):
        store.verify(f"{swapped}.{p}.{s}", now=NOW)


# --- header-supplied keys ------------------------------------------------------------------------


def _self_signed_certificate_b64(private: Any) -> str:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "attacker")])
    start = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(1)
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=36500))
        .sign(private, hashes.SHA256())
    )
    return base64.b64encode(certificate.public_bytes(serialization.Encoding.DER)).decode()


def test_header_supplied_keys_jwk_jku_x5u_x5c_are_never_used(keys: dict[str, Any]) -> None:
    _trusted_private, trusted_jwk = keys["ES256"]
    store = _store(trusted_jwk)
    attacker = generate_private_key("ES256")
    attacker_jwk = public_jwk(attacker.public_key(), "ES256")
    embedded: dict[str, dict[str, Any]] = {
        "jwk": {"jwk": attacker_jwk},
        "jku": {"jku": "https://evil.example/jwks.json"},
        "x5u": {"x5u": "https://evil.example/cert.pem"},
        "x5c": {"x5c": [_self_signed_certificate_b64(attacker)]},
    }
    for header in embedded.values():
        # Without a kid, with the trusted kid, and with the attacker's own kid.
        without_kid = _token(attacker, "ES256", header=header)
        with pytest.raises(errors.InvalidSignature):
            store.verify(without_kid, now=NOW)
        with pytest.raises(errors.InvalidSignature):
            store.verify(_token(attacker, "ES256", kid=trusted_jwk["kid"], header=header), now=NOW)
        with pytest.raises(errors.UnknownKey):
            store.verify(_token(attacker, "ES256", kid=attacker_jwk["kid"], header=header), now=NOW)


def test_header_supplied_keys_do_not_block_a_token_signed_by_a_trusted_key(keys: dict[str, Any]) -> None:
    private, jwk = keys["ES256"]
    attacker = generate_private_key("ES256")
    header = {
        "jwk": public_jwk(attacker.public_key(), "ES256"),
        "jku": "https://evil.example/jwks.json",
        "x5u": "https://evil.example/cert.pem",
        "x5c": [_self_signed_certificate_b64(attacker)],
    }
    assert (
        _store(jwk).verify(_token(private, "ES256", kid=jwk["kid"], header=header), now=NOW)["iss"] == ISS_A
    )


# --- issuers and kids ----------------------------------------------------------------------------


def test_kid_pointing_to_another_issuers_key_is_rejected(keys: dict[str, Any]) -> None:
    key_a, jwk_a = keys["ES256"]
    key_b, jwk_b = keys["EdDSA"]
    store = _two_issuers(jwk_a, jwk_b)
    # Issuer B's key, B's kid, claiming to be A.
    with pytest.raises(errors.InvalidIssuer):
        store.verify(_token(key_b, "EdDSA", kid=jwk_b["kid"], claims={"iss": ISS_A}), now=NOW)
    # A's key used under B's kid: the kid selects B's key, so A's signature cannot verify.
    with pytest.raises(errors.DisallowedAlgorithm):
        store.verify(_token(key_a, "ES256", kid=jwk_b["kid"]), now=NOW)
    assert store.verify(_token(key_b, "EdDSA", kid=jwk_b["kid"], claims={"iss": ISS_B}), now=NOW)


def test_kid_reused_by_another_issuer_does_not_lend_it_the_first_issuers_identity(
    keys: dict[str, Any],
) -> None:
    key_a, jwk_a = keys["ES256"]
    attacker = generate_private_key("ES256")
    # An external issuer B publishes its own key under issuer A's kid.
    impostor = {**public_jwk(attacker.public_key(), "ES256"), "kid": jwk_a["kid"]}
    store = _two_issuers(jwk_a, impostor)
    forged = _token(attacker, "ES256", kid=jwk_a["kid"], claims={"iss": ISS_A})
    with pytest.raises(errors.InvalidIssuer):
        store.verify(forged, now=NOW)
    assert store.verify(_token(key_a, "ES256", kid=jwk_a["kid"]), now=NOW)["iss"] == ISS_A


def test_a_key_injected_under_a_trusted_kid_of_the_same_issuer_makes_the_kid_fail_closed(
    keys: dict[str, Any],
) -> None:
    # Someone who can append to an issuer's set (a compromised provider endpoint, a bad merge) adds
    # their key under the issuer's kid. Which key a verifier then picks would depend on the order of
    # the set; ours uses neither, and says why.
    key_a, jwk_a = keys["ES256"]
    attacker = generate_private_key("ES256")
    injected = {**public_jwk(attacker.public_key(), "ES256"), "kid": jwk_a["kid"]}
    for order in ((jwk_a, injected), (injected, jwk_a)):
        store = _store(*order)
        with pytest.raises(errors.AmbiguousKey):
            store.verify(_token(attacker, "ES256", kid=jwk_a["kid"]), now=NOW)
        with pytest.raises(errors.AmbiguousKey):
            store.verify(_token(key_a, "ES256", kid=jwk_a["kid"]), now=NOW)
        with pytest.raises(errors.UnknownKey):
            store.verify(_token(attacker, "ES256"), now=NOW)


def test_a_small_order_ed25519_key_cannot_be_used_to_forge_tokens(keys: dict[str, Any]) -> None:
    # With the identity as public key, R = identity and S = 0 is a valid Ed25519 signature of every
    # message for the backend; the key is refused at load, so the forgery meets no key.
    identity = b"\x01" + bytes(31)
    weak = {"kty": "OKP", "crv": "Ed25519", "x": b64url_encode(identity), "kid": "weak", "alg": "EdDSA"}
    store = _store(weak, keys["EdDSA"][1])
    for kid in ("weak", None):
        head = {"alg": "EdDSA", **({"kid": kid} if kid else {})}
        signing_input = f"{_segment(head)}.{_segment({'iss': ISS_A, 'exp': NOW + 300})}"
        forged = f"{signing_input}.{b64url_encode(identity + bytes(32))}"
        with pytest.raises(errors.UnknownKey if kid else errors.InvalidSignature):
            store.verify(forged, now=NOW)


@pytest.mark.parametrize(
    "iss",
    [ISS_B, None, [ISS_A], ISS_A + "/", ISS_A.upper(), " " + ISS_A, ISS_A.replace("a", "\u0430")],
    ids=["other", "missing", "list", "trailing-slash", "case", "leading-space", "homoglyph"],
)
def test_cross_issuer_iss_is_rejected(keys: dict[str, Any], iss: Any) -> None:
    key_a, jwk_a = keys["ES256"]
    store = _two_issuers(jwk_a, keys["EdDSA"][1])
    with pytest.raises(errors.InvalidIssuer):
        store.verify(_token(key_a, "ES256", kid=jwk_a["kid"], claims={"iss": iss}), now=NOW)


def test_revoked_kid_is_rejected_with_and_without_kid_in_the_header(keys: dict[str, Any]) -> None:
    private, jwk = keys["ES256"]
    store = _two_issuers(jwk, keys["EdDSA"][1], revoked_kids=(jwk["kid"],))
    with pytest.raises(errors.RevokedKey):
        store.verify(_token(private, "ES256", kid=jwk["kid"]), now=NOW)
    with pytest.raises(errors.RevokedKey):
        store.verify(_token(private, "ES256"), now=NOW)
    with pytest.raises(errors.RevokedKey):
        store.verify_signature(_token(private, "ES256"))


def test_revoked_jti_is_rejected_and_only_for_its_issuer(keys: dict[str, Any]) -> None:
    key_a, jwk_a = keys["ES256"]
    key_b, jwk_b = keys["EdDSA"]
    store = _two_issuers(jwk_a, jwk_b, revoked_jtis=(("stolen", NOW + 300),))
    with pytest.raises(errors.RevokedToken):
        store.verify(_token(key_a, "ES256", kid=jwk_a["kid"], claims={"jti": "stolen"}), now=NOW)
    # B's jti namespace is its own: the same value is not revoked there.
    claims = {"jti": "stolen", "iss": ISS_B}
    assert store.verify(_token(key_b, "EdDSA", kid=jwk_b["kid"], claims=claims), now=NOW)["jti"] == "stolen"


# --- size and nesting ----------------------------------------------------------------------------


def test_oversized_token_is_rejected_before_parsing(keys: dict[str, Any]) -> None:
    private, jwk = keys["ES256"]
    store = _store(jwk)
    big = _token(private, "ES256", kid=jwk["kid"], claims={"pad": "x" * 70_000})
    with pytest.raises(errors.TokenTooLarge):
        store.verify(big, now=NOW)
    with pytest.raises(errors.TokenTooLarge):
        store.verify(big.encode(), now=NOW)
    with pytest.raises(errors.TokenTooLarge):
        store.verify("\u00e9" * 65_537, now=NOW)
    small = _token(private, "ES256", kid=jwk["kid"])
    with pytest.raises(errors.TokenTooLarge):
        store.verify(small, now=NOW, max_token_bytes=len(small) - 1)
    assert store.verify(big, now=NOW, max_token_bytes=len(big))["pad"] == "x" * 70_000


@pytest.mark.parametrize("part", ["header", "payload"])
def test_deeply_nested_json_is_rejected_quickly(keys: dict[str, Any], part: str) -> None:
    private, jwk = keys["ES256"]
    store = _store(jwk)
    deep = "[" * 20_000 + "]" * 20_000
    if part == "header":
        raw = f'{{"alg":"ES256","kid":"{jwk["kid"]}","x":{deep}}}'.encode()
        token = _token(private, "ES256", raw_header=raw)
    else:
        raw = f'{{"iss":"{ISS_A}","exp":{NOW + 300},"x":{deep}}}'.encode()
        token = _token(private, "ES256", kid=jwk["kid"], raw_payload=raw)
    started = time.perf_counter()
    with pytest.raises(errors.MalformedToken):
        store.verify(token, now=NOW)
    assert time.perf_counter() - started < 1.0


def test_nesting_up_to_the_limit_and_brackets_inside_strings_are_accepted(keys: dict[str, Any]) -> None:
    private, jwk = keys["ES256"]
    store = _store(jwk)
    nested: Any = 1
    for _ in range(30):  # 31 levels with the claims object itself
        nested = [nested]
    claims = {"x": nested, "s": "[{" * 1000}
    assert store.verify(_token(private, "ES256", kid=jwk["kid"], claims=claims), now=NOW)["s"] == "[{" * 1000
    too_deep = {"x": [[nested]]}  # 33 levels
    with pytest.raises(errors.MalformedToken):
        store.verify(_token(private, "ES256", kid=jwk["kid"], claims=too_deep), now=NOW)


# --- base64url -----------------------------------------------------------------------------------


def _flip_spare_bits(segment: str) -> str:
    """The same bytes written with a non-zero spare bit in the last character (a second encoding)."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    assert len(segment) % 4 in (2, 3)
    return segment[:-1] + alphabet[alphabet.index(segment[-1]) + 1]


@pytest.mark.parametrize("index", [0, 1, 2], ids=["header", "payload", "signature"])
def test_non_canonical_base64url_is_rejected_in_every_segment(keys: dict[str, Any], index: int) -> None:
    private, jwk = keys["EdDSA"]  # a 64-byte signature: 86 characters, spare bits in the last one
    store = _store(jwk)
    # Pick claims whose encoded header and payload also end in a partial group.
    candidates = (
        _token(private, "EdDSA", kid=jwk["kid"], header={"p": "x" * i}, claims={"p": "x" * j})
        for i in range(3)
        for j in range(3)
    )
    token = next(t for t in candidates if all(len(part) % 4 in (2, 3) for part in t.split(".")))
    assert store.verify(token, now=NOW)["iss"] == ISS_A
    parts = token.split(".")
    segment = parts[index]
    variants = {
        "padding": segment + "=" * (-len(segment) % 4),
        "plus": segment[:-2] + "+" + segment[-1] if "-" not in segment else segment.replace("-", "+"),
        "slash": segment[:-2] + "/" + segment[-1] if "_" not in segment else segment.replace("_", "/"),
        "spare-bits": _flip_spare_bits(segment),
        "space": segment[:4] + " " + segment[4:],
        "newline": segment + "\n",
        "tab": "\t" + segment,
        "impossible-length": segment + "A" * (5 - len(segment) % 4),
    }
    for variant in variants.values():
        mangled = ".".join(variant if i == index else part for i, part in enumerate(parts))
        with pytest.raises(errors.MalformedToken):
            store.verify(mangled, now=NOW)


# --- JSON ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw_header",
    [
        b'{"alg":"ES256","alg":"none"}',
        b'{"alg":"ES256","\\u0061lg":"none"}',
        b'{"alg":"ES256","kid":"a","kid":"b"}',
        b'{"alg":"ES256","x":{"y":1,"y":2}}',
    ],
    ids=["alg-twice", "alg-escaped", "kid-twice", "nested"],
)
def test_duplicate_json_members_in_the_header_are_rejected(keys: dict[str, Any], raw_header: bytes) -> None:
    private, _jwk = keys["ES256"]
    with pytest.raises(errors.MalformedToken):
        _store(keys["ES256"][1]).verify(_token(private, "ES256", raw_header=raw_header), now=NOW)


@pytest.mark.parametrize(
    "raw_payload",
    [
        f'{{"iss":"{ISS_A}","exp":{NOW + 300},"exp":{NOW + 10**9}}}',
        f'{{"iss":"{ISS_B}","exp":{NOW + 300},"\\u0069ss":"{ISS_A}"}}',
        f'{{"iss":"{ISS_A}","exp":{NOW + 300},"aud":"x","aud":"y"}}',
    ],
    ids=["exp-twice", "iss-escaped", "aud-twice"],
)
def test_duplicate_json_members_in_the_claims_are_rejected(keys: dict[str, Any], raw_payload: str) -> None:
    private, jwk = keys["ES256"]
    store = _store(jwk)
    with pytest.raises(errors.MalformedToken):
        store.verify(_token(private, "ES256", kid=jwk["kid"], raw_payload=raw_payload.encode()), now=NOW)


@pytest.mark.parametrize(
    "raw_payload",
    [
        f'{{"iss":"{ISS_A}","exp":NaN}}',
        f'{{"iss":"{ISS_A}","exp":Infinity}}',
        f'{{"iss":"{ISS_A}","exp":1}}garbage',
        f'\ufeff{{"iss":"{ISS_A}","exp":1}}',
        "",
        "null",
        '"a string"',
    ],
    ids=["nan", "infinity", "trailing-garbage", "bom", "empty", "null", "string"],
)
def test_claims_that_are_not_a_strict_json_object_are_rejected(
    keys: dict[str, Any], raw_payload: str
) -> None:
    private, jwk = keys["ES256"]
    store = _store(jwk)
    with pytest.raises(errors.MalformedToken):
        store.verify(_token(private, "ES256", kid=jwk["kid"], raw_payload=raw_payload.encode()), now=NOW)


def test_utf16_encoded_json_is_rejected(keys: dict[str, Any]) -> None:
    private, jwk = keys["ES256"]
    raw = json.dumps({"alg": "ES256", "kid": jwk["kid"]}).encode("utf-16")
    with pytest.raises(errors.MalformedToken):
        _store(jwk).verify(_token(private, "ES256", raw_header=raw), now=NOW)


# --- extensions ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "error"),
    [
        ({"crit": ["exp"], "exp": 1}, errors.UnsupportedToken),
        ({"crit": ["b64"], "b64": False}, errors.UnsupportedToken),
        ({"crit": ["http://example.com/ext"], "http://example.com/ext": True}, errors.UnsupportedToken),
        ({"crit": ["missing"]}, errors.UnsupportedToken),
        ({"crit": [1]}, errors.MalformedToken),
        ({"crit": None}, errors.MalformedToken),
        ({"b64": False}, errors.UnsupportedToken),
        ({"b64": True}, errors.UnsupportedToken),
        ({"cty": "JWT"}, errors.UnsupportedToken),
    ],
    ids=[
        "crit-exp",
        "crit-b64",
        "crit-uri",
        "crit-absent",
        "crit-number",
        "crit-null",
        "b64-false",
        "b64-true",
        "nested-jwt",
    ],
)
def test_unknown_crit_b64_false_and_nested_jwt_are_rejected(
    keys: dict[str, Any], extra: dict[str, Any], error: type[Exception]
) -> None:
    private, jwk = keys["ES256"]
    with pytest.raises(error):
        _store(jwk).verify(_token(private, "ES256", kid=jwk["kid"], header=extra), now=NOW)


@pytest.mark.parametrize("segments", [1, 2, 4, 5, 6])
def test_jwe_shaped_and_other_segment_counts_are_rejected(keys: dict[str, Any], segments: int) -> None:
    private, jwk = keys["ES256"]
    parts = _token(private, "ES256", kid=jwk["kid"]).split(".")
    shaped = ".".join((parts * 2)[:segments])
    with pytest.raises(errors.MalformedToken):
        _store(jwk).verify(shaped, now=NOW)


def test_jws_json_serialization_is_rejected(keys: dict[str, Any]) -> None:
    private, jwk = keys["ES256"]
    h, p, s = _token(private, "ES256", kid=jwk["kid"]).split(".")
    flattened = json.dumps({"protected": h, "payload": p, "signature": s})
    with pytest.raises(errors.MalformedToken):
        _store(jwk).verify(flattened, now=NOW)


# --- Unicode and whitespace ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: " " + t,
        lambda t: t + "\n",
        lambda t: t + "\r\n",
        lambda t: t.replace(".", "\uff0e", 1),  # fullwidth full stop
        lambda t: t.replace(".", ". ", 1),
        lambda t: t.replace("A", "\u0410", 1),  # Cyrillic capital A
        lambda t: "\ufeff" + t,
        lambda t: t + "\u0000",
    ],
    ids=[
        "leading-space",
        "trailing-newline",
        "trailing-crlf",
        "fullwidth-dot",
        "space-after-dot",
        "cyrillic-letter",
        "bom",
        "nul",
    ],
)
def test_unicode_and_whitespace_tricks_around_the_token_are_rejected(
    keys: dict[str, Any], mangle: Any
) -> None:
    private, jwk = keys["ES256"]
    token = _token(private, "ES256", kid=jwk["kid"])
    assert "A" in token
    with pytest.raises(errors.MalformedToken):
        _store(jwk).verify(mangle(token), now=NOW)


@pytest.mark.parametrize(
    "alg",
    ["ES256 ", "\u0395S256", "ES256\u200b", "es256", "\uff25\uff33256"],
    ids=["trailing-space", "greek-epsilon", "zero-width-space", "lowercase", "fullwidth"],
)
def test_lookalike_alg_names_are_rejected(keys: dict[str, Any], alg: str) -> None:
    private, jwk = keys["ES256"]
    raw = json.dumps({"alg": alg, "kid": jwk["kid"]}).encode()
    with pytest.raises(errors.DisallowedAlgorithm):
        _store(jwk).verify(_token(private, "ES256", raw_header=raw), now=NOW)


def test_lookalike_kid_is_an_unknown_key(keys: dict[str, Any]) -> None:
    private, jwk = keys["ES256"]
    store = _store(jwk)
    for kid in (jwk["kid"] + " ", jwk["kid"].upper(), "\u200b" + jwk["kid"], jwk["kid"][:-1]):
        with pytest.raises(errors.UnknownKey):
            store.verify(_token(private, "ES256", kid=kid), now=NOW)


# --- numeric edge cases --------------------------------------------------------------------------


@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
@pytest.mark.parametrize(
    "raw_value",
    ["true", "false", '"1800000300"', "[1800000300]", "{}", "1e400", "-1e400"],
    ids=["true", "false", "string", "list", "object", "overflow-to-infinity", "overflow-to-minus-infinity"],
)
def test_time_claims_that_are_not_finite_numbers_are_malformed(
    keys: dict[str, Any], claim: str, raw_value: str
) -> None:
    private, jwk = keys["ES256"]
    claims = {"iss": ISS_A, "exp": NOW + 300}
    raw = json.dumps(claims)[:-1] if claim != "exp" else f'{{"iss":"{ISS_A}"'
    payload = f'{raw},"{claim}":{raw_value}}}'.encode()
    with pytest.raises(errors.MalformedClaim):
        _store(jwk).verify(_token(private, "ES256", kid=jwk["kid"], raw_payload=payload), now=NOW)


def test_exp_as_a_float_or_a_huge_integer_follows_the_time_rules(keys: dict[str, Any]) -> None:
    private, jwk = keys["ES256"]
    store = _store(jwk)
    assert store.verify(_token(private, "ES256", kid=jwk["kid"], claims={"exp": NOW + 0.5}), now=NOW)
    assert store.verify(_token(private, "ES256", kid=jwk["kid"], claims={"exp": 10**30}), now=NOW)
    with pytest.raises(errors.ExpiredToken):
        store.verify(_token(private, "ES256", kid=jwk["kid"], claims={"exp": -(10**30)}), now=NOW)
    with pytest.raises(errors.ExpiredToken):
        store.verify(_token(private, "ES256", kid=jwk["kid"], claims={"exp": NOW - 60.5}), now=NOW)
    with pytest.raises(errors.NotYetValid):
        store.verify(_token(private, "ES256", kid=jwk["kid"], claims={"nbf": 10**30}), now=NOW)


def test_exp_beyond_the_range_of_a_float_is_compared_exactly_not_a_crash(keys: dict[str, Any]) -> None:
    # 10**400 has 401 digits (under Python's 4,300-digit limit) but no float holds it: exp + leeway
    # used to raise OverflowError, an untyped crash, instead of an answer.
    private, jwk = keys["ES256"]
    store = _store(jwk)
    assert store.verify(_token(private, "ES256", kid=jwk["kid"], claims={"exp": 10**400}), now=NOW)
    with pytest.raises(errors.ExpiredToken):
        store.verify(_token(private, "ES256", kid=jwk["kid"], claims={"exp": -(10**400)}), now=NOW)
    with pytest.raises(errors.NotYetValid):
        store.verify(_token(private, "ES256", kid=jwk["kid"], claims={"nbf": 10**400}), now=NOW)


def test_integer_with_too_many_digits_is_malformed_not_a_crash(keys: dict[str, Any]) -> None:
    private, jwk = keys["ES256"]
    payload = f'{{"iss":"{ISS_A}","exp":{"9" * 5000}}}'.encode()
    with pytest.raises(errors.MalformedToken):
        _store(jwk).verify(_token(private, "ES256", kid=jwk["kid"], raw_payload=payload), now=NOW)


def test_null_exp_is_missing(keys: dict[str, Any]) -> None:
    private, jwk = keys["ES256"]
    with pytest.raises(errors.MissingClaim):
        _store(jwk).verify(_token(private, "ES256", kid=jwk["kid"], claims={"exp": None}), now=NOW)


# --- caches --------------------------------------------------------------------------------------


def test_a_header_checked_before_a_reload_is_checked_again_under_the_new_trust(
    keys: dict[str, Any], tmp_path: Path
) -> None:
    private, jwk = keys["ES256"]
    other = keys["EdDSA"][1]

    def publish(version: str, trusted: dict[str, str]) -> None:
        trust = PolicyTrust(policy="p", issuers=(IssuerTrust(ref="ns/a", issuer=ISS_A, keys=(trusted,)),))
        (tmp_path / version).mkdir()
        for name, content in render_configmap_data(trust, revision=int(version[-1])).items():
            (tmp_path / version / name).write_text(content)
            if not (tmp_path / name).is_symlink():
                (tmp_path / name).symlink_to(Path("..data") / name)
        (tmp_path / "..data_tmp").symlink_to(version)
        os.replace(tmp_path / "..data_tmp", tmp_path / "..data")

    publish("..v1", jwk)
    store = TrustStore.from_directory(tmp_path, reload_interval=0)
    assert store.verify(_token(private, "ES256", kid=jwk["kid"]), now=NOW)["iss"] == ISS_A
    publish("..v2", other)  # the key is withdrawn; the header segment of the next token is the same
    with pytest.raises(errors.UnknownKey):
        store.verify(_token(private, "ES256", kid=jwk["kid"], claims={"jti": "new"}), now=NOW)


def test_a_flood_of_distinct_headers_does_not_change_any_outcome(keys: dict[str, Any]) -> None:
    private, jwk = keys["EdDSA"]
    store = _store(jwk)
    for n in range(600):  # more than the header cache holds
        token = _token(private, "EdDSA", kid=jwk["kid"], header={"n": n, "pad": "x" * (n % 3000)})
        assert store.verify(token, now=NOW)["iss"] == ISS_A
        h, p, _s = token.split(".")
        with pytest.raises(errors.InvalidSignature):
            store.verify(f"{h}.{p}.{b64url_encode(bytes(64))}", now=NOW)
