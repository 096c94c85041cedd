"""Every RFC 7518 asymmetric algorithm, end to end: Wycheproof-style vectors through the library and the
CLI, each algorithm bound to its key type and curve, known-weak keys refused at load, ambiguous kids,
and revocation per issuer.

The vectors (tests/unit/vectors.py) are generated with cryptography: a genuine signature per algorithm
and the variants verifiers have got wrong (DER for ECDSA, r/s zero or not below n, ES512's 132 bytes
cut or padded, curve-size, hash, RS/PS and PSS-salt confusion, Ed25519's S + L). Each one is checked
three ways: the algorithm table alone, a token through a TrustStore (on the C twin and on the Python
reference), and the same token through ``jwt-trust verify``.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import pytest
import vectors
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from jwt_trust import errors
from jwt_trust.algorithms import ALGORITHMS, EC_CURVES
from jwt_trust.cli import main
from jwt_trust.keys import (
    b64url_decode,
    b64url_encode,
    has_roca_fingerprint,
    private_key_from_pem,
    private_key_to_pem,
    public_jwk,
    public_key_from_jwk,
)
from jwt_trust.projection import DEFAULT_ALGORITHMS, IssuerTrust, PolicyTrust, render_configmap_data
from jwt_trust.verifier import TrustStore

pytestmark = pytest.mark.usefixtures("each_hotpath")

NOW = 1_800_000_000
ISS_A = "https://a.example"
ISS_B = "https://b.example"
CLAIMS = {"iss": ISS_A, "sub": "alice", "exp": NOW + 300, "iat": NOW}


def _segment(value: Any) -> str:
    return b64url_encode(json.dumps(value).encode())


@functools.cache
def _jwk(alg: str) -> dict[str, str]:
    return public_jwk(vectors.private_key(alg).public_key(), alg)


def _signing_input(alg: str, *, kid: str | None = None, claims: dict[str, Any] | None = None) -> str:
    header = {"alg": alg, "typ": "JWT", **({"kid": kid} if kid else {})}
    return f"{_segment(header)}.{_segment(claims or CLAIMS)}"


def _token(
    alg: str, private: Any = None, *, kid: str | None = None, claims: dict[str, Any] | None = None
) -> str:
    signing_input = _signing_input(alg, kid=kid, claims=claims)
    signature = ALGORITHMS[alg].sign(private or vectors.private_key(alg), signing_input.encode())
    return f"{signing_input}.{b64url_encode(signature)}"


@functools.cache
def _vectors(alg: str) -> tuple[str, tuple[vectors.Vector, ...]]:
    """The signing input of a token naming the key's kid, and the vectors over it."""
    signing_input = _signing_input(alg, kid=_jwk(alg)["kid"])
    return signing_input, tuple(vectors.signature_vectors(alg, signing_input.encode()))


def _ids(alg: str) -> list[str]:
    return [vector.name for vector in _vectors(alg)[1]]


ALL_VECTORS = [(alg, index) for alg in vectors.CANONICAL for index in range(len(_vectors(alg)[1]))]
VECTOR_IDS = [f"{alg}-{_vectors(alg)[1][index].name}" for alg, index in ALL_VECTORS]


# --- the vectors ----------------------------------------------------------------------------------


def test_every_algorithm_has_vectors_of_each_kind() -> None:
    for alg in vectors.CANONICAL:
        kinds = {vector.valid for vector in _vectors(alg)[1]}
        assert kinds == {True, False}, alg
    assert set(vectors.CANONICAL) == set(DEFAULT_ALGORITHMS)
    names = set(_ids("ES512"))
    assert {"der-encoded", "r-zero", "s-equals-n", "width-of-32-byte-curve", "one-byte-short"} <= names
    assert {"signed-as-RS256", "salt-empty", "mgf1-sha1"} <= set(_ids("PS512"))
    assert len(_vectors("ES512")[1][0].signature) == 132


@pytest.mark.parametrize(("alg", "index"), ALL_VECTORS, ids=VECTOR_IDS)
def test_vector_through_the_algorithm_table_and_the_trust_store(alg: str, index: int) -> None:
    signing_input, all_vectors = _vectors(alg)
    vector = all_vectors[index]
    public = vectors.private_key(alg).public_key()
    assert ALGORITHMS[alg].verify(public, vector.signature, signing_input.encode()) is vector.valid
    # A JWK that names its alg, and a bare one (which fits every alg of its type): same outcome.
    for jwk in (_jwk(alg), {k: v for k, v in _jwk(alg).items() if k != "alg"}):
        store = TrustStore.from_jwks({"keys": [jwk]}, issuer=ISS_A)
        token = f"{signing_input}.{b64url_encode(vector.signature)}"
        if vector.valid:
            assert store.verify(token, now=NOW)["sub"] == "alice"
        else:
            with pytest.raises(errors.InvalidSignature):
                store.verify(token, now=NOW)


@pytest.mark.parametrize("alg", vectors.CANONICAL)
def test_vectors_through_the_cli(alg: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [_jwk(alg)]}))
    signing_input, all_vectors = _vectors(alg)
    for vector in all_vectors:
        token = f"{signing_input}.{b64url_encode(vector.signature)}"
        code = main(["verify", token, "--jwks", str(jwks), "--issuer", ISS_A, "--now", str(NOW)])
        captured = capsys.readouterr()
        if vector.valid:
            assert (code, json.loads(captured.out)["sub"]) == (0, "alice"), vector.name
        else:
            assert (code, captured.err) == (
                1,
                "rejected: InvalidSignature: the signature does not verify\n",
            ), vector.name


# --- each algorithm bound to its key type and curve -----------------------------------------------


def test_each_algorithm_fits_exactly_the_keys_of_its_type_and_curve() -> None:
    families = {"EdDSA": "Ed25519", "Ed25519": "Ed25519"}
    families |= {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}
    for alg, algorithm in ALGORITHMS.items():
        for key_alg in vectors.CANONICAL:
            public = vectors.private_key(key_alg).public_key()
            same = families.get(alg, "RSA") == families.get(key_alg, "RSA")
            assert algorithm.fits(public) is same, (alg, key_alg)
    assert ALGORITHMS["ES512"].crv == "P-521"
    assert ALGORITHMS["ES512"].signature_size == 2 * EC_CURVES["P-521"].coordinate_size == 132
    for alg in ("PS256", "PS384", "PS512"):
        rsa_padding, digest = ALGORITHMS[alg].parameters
        assert rsa_padding._salt_length == digest.digest_size  # RFC 7518 §3.5
        assert rsa_padding._mgf._algorithm.name == digest.name


@pytest.mark.parametrize("header_alg", sorted(ALGORITHMS))
@pytest.mark.parametrize("key_alg", vectors.CANONICAL)
def test_a_token_verifies_only_under_the_algorithm_that_signed_it(header_alg: str, key_alg: str) -> None:
    """The header claims ``header_alg``; the key (published without an alg) signed with ``key_alg``."""
    jwk = {k: v for k, v in _jwk(key_alg).items() if k != "alg"}
    store = TrustStore.from_jwks({"keys": [jwk]}, issuer=ISS_A, algorithms=sorted(ALGORITHMS))
    signing_input = _signing_input(header_alg, kid=jwk["kid"])
    signature = ALGORITHMS[key_alg].sign(vectors.private_key(key_alg), signing_input.encode())
    token = f"{signing_input}.{b64url_encode(signature)}"
    if (ALGORITHMS[header_alg].kty == "OKP" and key_alg == "EdDSA") or header_alg == key_alg:
        assert store.verify(token, now=NOW)["sub"] == "alice"
    elif ALGORITHMS[header_alg].fits(vectors.private_key(key_alg).public_key()):
        with pytest.raises(errors.InvalidSignature):  # same key type: the signature check refuses
            store.verify(token, now=NOW)
    else:
        with pytest.raises(errors.DisallowedAlgorithm):  # another key type or curve: never tried
            store.verify(token, now=NOW)


@pytest.mark.parametrize("alg", vectors.CANONICAL)
def test_a_key_that_names_its_alg_verifies_no_other(alg: str) -> None:
    store = TrustStore.from_jwks({"keys": [_jwk(alg)]}, issuer=ISS_A, algorithms=sorted(ALGORITHMS))
    for other in vectors.CANONICAL:
        if other != alg and ALGORITHMS[other].fits(vectors.private_key(alg).public_key()):
            with pytest.raises(errors.DisallowedAlgorithm):
                store.verify(_token(other, vectors.private_key(alg), kid=_jwk(alg)["kid"]), now=NOW)
    assert store.verify(_token(alg, kid=_jwk(alg)["kid"]), now=NOW)["sub"] == "alice"


def test_p521_keys_round_trip_through_jwk_and_pem_and_refuse_other_sizes() -> None:
    private = vectors.private_key("ES512")
    jwk = _jwk("ES512")
    assert (jwk["crv"], len(jwk["x"]), len(jwk["y"])) == ("P-521", 88, 88)  # 66 bytes each
    assert public_key_from_jwk(jwk).public_numbers() == private.public_key().public_numbers()
    assert isinstance(private_key_from_pem(private_key_to_pem(private)), ec.EllipticCurvePrivateKey)
    x = b64url_decode(jwk["x"])
    for bad in (x[1:], b"\x00" + x, x[:32]):  # 65, 67 and P-256's 32 bytes
        with pytest.raises(errors.InvalidKey, match="exactly 66 bytes"):
            public_key_from_jwk({**jwk, "x": b64url_encode(bad)})
    with pytest.raises(errors.InvalidKey, match="exactly 32 bytes"):
        public_key_from_jwk({**_jwk("ES256"), "crv": "P-256", "x": jwk["x"], "y": jwk["y"]})
    y = bytearray(b"\x00" + b"\x01" * 65)
    with pytest.raises(errors.InvalidKey, match="not on P-521"):
        public_key_from_jwk({**jwk, "y": b64url_encode(bytes(y))})


# --- known-weak keys ------------------------------------------------------------------------------


def _rsa_jwk(n: int, e: int) -> dict[str, str]:
    def uint(value: int) -> str:
        return b64url_encode(value.to_bytes((value.bit_length() + 7) // 8, "big"))

    return {"kty": "RSA", "n": uint(n), "e": uint(e)}


def test_a_roca_modulus_is_refused_at_load_everywhere(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    roca = vectors.roca_private_key()
    numbers = roca.public_key().public_numbers()
    assert has_roca_fingerprint(numbers.n)
    # Genuine otherwise: cryptography signs and verifies with it.
    assert ALGORITHMS["RS256"].verify(roca.public_key(), ALGORITHMS["RS256"].sign(roca, b"x"), b"x")
    jwk = public_jwk(roca.public_key(), "RS256")
    with pytest.raises(errors.WeakKey, match="ROCA"):
        public_key_from_jwk(jwk)
    with pytest.raises(errors.WeakKey, match="ROCA"):
        private_key_from_pem(private_key_to_pem(roca))
    store = TrustStore.from_jwks({"keys": [jwk, _jwk("ES256")]}, issuer=ISS_A)
    assert store.warnings == (f"issuer jwks: kid {jwk['kid']!r} refused: {_roca_message()}",)
    with pytest.raises(errors.UnknownKey):
        store.verify(_token("RS256", roca, kid=jwk["kid"]), now=NOW)
    with pytest.raises(errors.UnknownKey):
        store.verify(_token("RS256", roca), now=NOW)
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": [jwk]}))
    token = _token("RS256", roca, kid=jwk["kid"])
    assert main(["verify", token, "--jwks", str(tmp_path / "jwks.json"), "--now", str(NOW)]) == 1
    assert capsys.readouterr().err.startswith("rejected: UnknownKey:")


def _roca_message() -> str:
    return "the RSA modulus has the ROCA fingerprint (CVE-2017-15361): it can be factored"


def test_the_roca_fingerprint_does_not_flag_genuine_keys() -> None:
    for alg in ("RS256", "PS256"):
        n = vectors.private_key(alg).public_key().public_numbers().n
        assert not has_roca_fingerprint(n)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(st.integers(min_value=2**2047, max_value=2**2048 - 1))
def test_random_moduli_almost_never_carry_the_roca_fingerprint(n: int) -> None:
    # About 2**-28 per modulus: derandomized, so the same 300 moduli every run.
    assert not has_roca_fingerprint(n | 1)


def test_the_roca_fingerprint_accepts_exactly_the_powers_of_65537_mod_each_prime() -> None:
    # An independent restatement of the test: a residue r mod p passes iff r = 65537**k mod p for some k.
    n = vectors.roca_private_key().public_key().public_numbers().n
    for p in (3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89):
        assert any(pow(65537, k, p) == n % p for k in range(p))
    # Moving N by a multiple of every fingerprint prime but one changes the verdict through that one.
    others = 2 * 3 * 5 * 7 * 11 * 13 * 17 * 19 * 23 * 29 * 31 * 37 * 41 * 43 * 47 * 53 * 59 * 61 * 67 * 71
    others *= (
        73 * 79 * 83 * 89 * 97 * 101 * 103 * 107 * 109 * 113 * 127 * 131 * 137 * 139 * 149 * 151 * 157 * 163
    )
    shifted = [n + k * others for k in range(1, 167)]
    outside = [m for m in shifted if not any(pow(65537, k, 167) == m % 167 for k in range(167))]
    assert outside
    assert all(has_roca_fingerprint(m) != (m in outside) for m in shifted)


@pytest.mark.parametrize("e", [1, 3, 5, 17, 257, 65535, 65536, 65538, 2**256 + 1, 2**512 + 1])
def test_rsa_exponents_that_are_even_or_outside_the_fips_range_are_weak(e: int) -> None:
    n = vectors.private_key("RS256").public_key().public_numbers().n
    with pytest.raises(errors.WeakKey, match="exponent"):
        public_key_from_jwk(_rsa_jwk(n, e))


@pytest.mark.parametrize("e", [65537, 65539, 2**255 + 1, 2**256 - 1])
def test_rsa_exponents_in_range_are_accepted(e: int) -> None:
    n = vectors.private_key("RS256").public_key().public_numbers().n
    assert public_key_from_jwk(_rsa_jwk(n, e)).public_numbers().e == e


def test_a_genuine_rsa_key_with_exponent_3_is_refused_with_its_tokens(tmp_path: Path) -> None:
    weak = rsa.generate_private_key(public_exponent=3, key_size=2048)
    jwk = public_jwk(weak.public_key(), "PS256")
    token = _token("PS256", weak, kid=jwk["kid"])
    assert ALGORITHMS["PS256"].verify(
        weak.public_key(), _raw_signature(token), token.rpartition(".")[0].encode()
    )
    store = TrustStore.from_jwks({"keys": [jwk]}, issuer=ISS_A)
    assert "exponent" in store.warnings[0]
    with pytest.raises(errors.UnknownKey):
        store.verify(token, now=NOW)
    with pytest.raises(errors.WeakKey):
        private_key_from_pem(private_key_to_pem(weak))
    big = vectors.rsa_private_key_with_exponent(2**256 + 1)
    with pytest.raises(errors.WeakKey, match="exponent"):
        public_key_from_jwk(public_jwk(big.public_key(), "RS256"))


def _raw_signature(token: str) -> bytes:
    import base64

    segment = token.rpartition(".")[2]
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


SMALL_ORDER = vectors.ed25519_small_order_encodings()


@pytest.mark.parametrize("name", sorted(SMALL_ORDER))
def test_ed25519_points_of_small_order_are_weak_in_every_encoding(name: str) -> None:
    encoded = SMALL_ORDER[name]
    assert vectors.ed25519_has_small_order(encoded)  # the independent model agrees it is one
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": b64url_encode(encoded)}
    with pytest.raises(errors.WeakKey):
        public_key_from_jwk(jwk)
    store = TrustStore.from_jwks({"keys": [{**jwk, "kid": "low"}]}, issuer=ISS_A)
    (warning,) = store.warnings
    assert warning.startswith("issuer jwks: kid 'low' refused:")


def test_the_identity_as_an_ed25519_key_would_accept_a_forgery_for_every_message() -> None:
    # Why small-order keys must go: with A = identity, R = identity and S = 0 verify any message in
    # the backend. The verifier never loads the key, so the forged token is an unknown key.
    identity = SMALL_ORDER["identity"]
    forged_signature = identity + bytes(32)
    backend = Ed25519PublicKey.from_public_bytes(identity)
    backend.verify(forged_signature, b"any message at all")
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": b64url_encode(identity), "kid": "k"}
    store = TrustStore.from_jwks({"keys": [jwk]}, issuer=ISS_A)
    signing_input = _signing_input("EdDSA", kid="k")
    with pytest.raises(errors.UnknownKey):
        store.verify(f"{signing_input}.{b64url_encode(forged_signature)}", now=NOW)


def test_non_canonical_and_off_curve_ed25519_encodings_are_refused() -> None:
    p = vectors.P
    refused_non_canonical = refused_off_curve = 0
    for y in range(19):  # y + p < 2**255: the only values with a second encoding
        encoded = (y + p).to_bytes(32, "little")
        with pytest.raises(errors.WeakKey, match=r"canonical|small order"):
            public_key_from_jwk({"kty": "OKP", "crv": "Ed25519", "x": b64url_encode(encoded)})
        refused_non_canonical += 1
    for y in range(2, 200):
        encoded = y.to_bytes(32, "little")
        jwk = {"kty": "OKP", "crv": "Ed25519", "x": b64url_encode(encoded)}
        if vectors._decode(encoded) is None:
            with pytest.raises(errors.InvalidKey, match="not on Ed25519"):
                public_key_from_jwk(jwk)
            refused_off_curve += 1
        else:
            assert isinstance(public_key_from_jwk(jwk), Ed25519PublicKey)
    assert refused_non_canonical == 19
    assert refused_off_curve > 50  # about half of all y have no x


@settings(max_examples=400, deadline=None)
@given(st.binary(min_size=32, max_size=32))
def test_ed25519_import_agrees_with_the_curve_model(encoded: bytes) -> None:
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": b64url_encode(encoded)}
    try:
        public_key_from_jwk(jwk)
    except errors.WeakKey:
        y = int.from_bytes(encoded, "little") & ((1 << 255) - 1)
        assert y >= vectors.P or vectors.ed25519_has_small_order(encoded)
    except errors.InvalidKey:
        assert vectors._decode(encoded) is None
    else:
        assert vectors._decode(encoded) is not None
        assert not vectors.ed25519_has_small_order(encoded)


def test_genuine_ed25519_keys_are_accepted() -> None:
    for _ in range(50):
        jwk = public_jwk(Ed25519PrivateKey.generate().public_key(), "EdDSA")
        assert isinstance(public_key_from_jwk(jwk), Ed25519PublicKey)


# --- ambiguous kids ---------------------------------------------------------------------------------


def _two_keys_one_kid() -> tuple[Any, Any, dict[str, str], dict[str, str]]:
    first, second = vectors.private_key("ES256"), vectors.private_key("ES384")
    one = {**public_jwk(first.public_key(), "ES256"), "kid": "shared"}
    two = {**public_jwk(second.public_key(), "ES384"), "kid": "shared"}
    return first, second, one, two


def test_a_kid_naming_two_keys_of_one_issuer_refuses_its_tokens() -> None:
    first, second, one, two = _two_keys_one_kid()
    store = TrustStore.from_jwks({"keys": [one, two, _jwk("EdDSA")]}, issuer=ISS_A)
    assert store.warnings == ("issuer jwks: kid 'shared' names 2 different keys; none of them is used",)
    with pytest.raises(errors.AmbiguousKey):
        store.verify(_token("ES256", first, kid="shared"), now=NOW)
    with pytest.raises(errors.AmbiguousKey):
        store.verify(_token("ES384", second, kid="shared"), now=NOW)
    # Without a kid the keys are not used either (they are not trusted while the set is ambiguous).
    with pytest.raises(errors.UnknownKey):
        store.verify(_token("ES256", first), now=NOW)
    # The issuer's other keys are unaffected.
    assert store.verify(_token("EdDSA", kid=_jwk("EdDSA")["kid"]), now=NOW)["sub"] == "alice"


def test_one_key_listed_twice_under_its_kid_is_not_ambiguous() -> None:
    jwk = _jwk("RS256")
    as_ps = {**jwk, "alg": "PS256"}
    padded = {**jwk, "n": "AAAA" + jwk["n"], "alg": "RS384"}  # redundant leading zero octets
    store = TrustStore.from_jwks({"keys": [jwk, as_ps, padded]}, issuer=ISS_A)
    assert store.warnings == ()
    for alg in ("RS256", "PS256", "RS384"):
        assert store.verify(_token(alg, kid=jwk["kid"]), now=NOW)["sub"] == "alice"


def test_a_kid_shared_by_two_issuers_stays_legal() -> None:
    first, second, one, two = _two_keys_one_kid()
    store = TrustStore.from_trust(
        PolicyTrust(
            policy="p",
            issuers=(
                IssuerTrust(ref="ns/a", issuer=ISS_A, keys=(one,)),
                IssuerTrust(ref="ns/b", issuer=ISS_B, keys=(two,)),
            ),
        )
    )
    assert store.warnings == ()
    assert store.verify(_token("ES256", first, kid="shared"), now=NOW)["iss"] == ISS_A
    claims_b = {**CLAIMS, "iss": ISS_B}
    assert store.verify(_token("ES384", second, kid="shared", claims=claims_b), now=NOW)["iss"] == ISS_B
    with pytest.raises(errors.InvalidIssuer):  # each key still verifies only its own issuer's tokens
        store.verify(_token("ES384", second, kid="shared"), now=NOW)


def test_an_ambiguous_kid_in_a_trust_directory_and_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, _second, one, two = _two_keys_one_kid()
    trust = PolicyTrust(policy="p", issuers=(IssuerTrust(ref="ns/a", issuer=ISS_A, keys=(one, two)),))
    for name, content in render_configmap_data(trust, revision=1).items():
        (tmp_path / name).write_text(content)
    store = TrustStore.from_directory(tmp_path)
    assert store.warnings == ("issuer ns/a: kid 'shared' names 2 different keys; none of them is used",)
    token = _token("ES256", first, kid="shared")
    with pytest.raises(errors.AmbiguousKey):
        store.verify(token, now=NOW)
    assert main(["verify", token, "--trust-dir", str(tmp_path), "--now", str(NOW)]) == 1
    assert capsys.readouterr().err == (
        "rejected: AmbiguousKey: the token's kid names more than one key of an issuer\n"
    )
    (tmp_path / "set.json").write_text(json.dumps({"keys": [one, two]}))
    assert main(["verify", token, "--jwks", str(tmp_path / "set.json"), "--now", str(NOW)]) == 1
    assert capsys.readouterr().err.startswith("rejected: AmbiguousKey:")


# --- revocation per issuer ------------------------------------------------------------------------


def test_a_kid_revoked_by_one_issuer_does_not_reject_another_issuers_key_of_that_kid() -> None:
    first, second, one, two = _two_keys_one_kid()
    store = TrustStore.from_trust(
        PolicyTrust(
            policy="p",
            issuers=(
                IssuerTrust(ref="ns/a", issuer=ISS_A, keys=(one,), revoked_kids=("shared",)),
                IssuerTrust(ref="ns/b", issuer=ISS_B, keys=(two,)),
            ),
        )
    )
    claims_b = {**CLAIMS, "iss": ISS_B}
    assert store.verify(_token("ES384", second, kid="shared", claims=claims_b), now=NOW)["iss"] == ISS_B
    assert store.verify(_token("ES384", second, claims=claims_b), now=NOW)["iss"] == ISS_B
    assert (
        store.verify_signature(_token("ES384", second, kid="shared", claims=claims_b))[0]["kid"] == "shared"
    )
    with pytest.raises(errors.RevokedKey):
        store.verify(_token("ES256", first, kid="shared"), now=NOW)
    with pytest.raises(errors.RevokedKey):
        store.verify(_token("ES256", first), now=NOW)


# --- key generation -------------------------------------------------------------------------------


def test_the_cli_generates_mints_and_verifies_es512(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys, jwks = tmp_path / "keys", tmp_path / "jwks.json"
    assert (
        main(["keygen", "--alg", "ES512", "--issuer", ISS_A, "--out", str(keys), "--jwks-out", str(jwks)])
        == 0
    )
    assert json.loads(jwks.read_text())["keys"][0]["crv"] == "P-521"
    assert main(["mint", "--key-dir", str(keys), "--subject", "bob"]) == 0
    token = capsys.readouterr().out.strip()
    assert len(_raw_signature(token)) == 132
    assert main(["verify", token, "--jwks", str(jwks), "--issuer", ISS_A]) == 0
    assert json.loads(capsys.readouterr().out)["sub"] == "bob"
