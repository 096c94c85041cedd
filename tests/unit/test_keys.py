"""Keys and algorithms: round trips for every alg, the RFC 7638 vector, and the JWKs and signatures we
must refuse (small RSA, off-curve points, X25519, private members, non-canonical base64url, DER and zero
ECDSA signatures)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from jwt_trust.algorithms import ALGORITHMS, normalise_algorithm
from jwt_trust.errors import InvalidKey
from jwt_trust.keys import (
    PrivateKey,
    b64url_decode,
    b64url_encode,
    generate_private_key,
    private_key_from_pem,
    private_key_to_pem,
    public_jwk,
    public_key_from_jwk,
    thumbprint,
)

ALL_ALGS = ["EdDSA", "Ed25519", "ES256", "ES384", "PS256", "RS256"]
DATA = b"eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9"

# RFC 7638 §3.1.
RFC7638_JWK = {
    "kty": "RSA",
    "n": (
        "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCi"
        "FV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgn"
        "Yb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqb"
        "w0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
    ),
    "e": "AQAB",
    "alg": "RS256",
    "kid": "2011-04-29",
}
RFC7638_KID = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


@pytest.fixture(scope="module")
def private_keys() -> dict[str, PrivateKey]:
    # RSA generation is slow on a shared machine: one 2048-bit key per RSA alg, generated once.
    return {alg: generate_private_key(alg, rsa_bits=2048) for alg in ALL_ALGS}


def ec_jwk(crv: str = "P-256") -> dict[str, str]:
    curve: ec.EllipticCurve = ec.SECP256R1() if crv == "P-256" else ec.SECP384R1()
    return public_jwk(ec.generate_private_key(curve), "ES256" if crv == "P-256" else "ES384")


# --- round trips --------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ALL_ALGS)
def test_signature_verifies_with_the_key_imported_from_the_published_jwk(
    alg: str, private_keys: dict[str, PrivateKey]
) -> None:
    algorithm = ALGORITHMS[alg]
    signature = algorithm.sign(private_keys[alg], DATA)
    public_key = public_key_from_jwk(public_jwk(private_keys[alg], alg))
    assert algorithm.verify(public_key, signature, DATA)


@pytest.mark.parametrize("alg", ALL_ALGS)
def test_tampered_data_or_signature_does_not_verify(alg: str, private_keys: dict[str, PrivateKey]) -> None:
    algorithm = ALGORITHMS[alg]
    public_key = public_key_from_jwk(public_jwk(private_keys[alg], alg))
    signature = algorithm.sign(private_keys[alg], DATA)
    flipped = bytes([signature[0] ^ 1]) + signature[1:]
    assert not algorithm.verify(public_key, signature, DATA + b"x")
    assert not algorithm.verify(public_key, flipped, DATA)
    assert not algorithm.verify(public_key, signature[:-1], DATA)


@pytest.mark.parametrize(("alg", "size"), [("EdDSA", 64), ("ES256", 64), ("ES384", 96)])
def test_fixed_size_signatures_have_the_documented_length(
    alg: str, size: int, private_keys: dict[str, PrivateKey]
) -> None:
    assert len(ALGORITHMS[alg].sign(private_keys[alg], DATA)) == size == ALGORITHMS[alg].signature_size


def test_key_of_another_type_or_curve_never_verifies(private_keys: dict[str, PrivateKey]) -> None:
    es256_signature = ALGORITHMS["ES256"].sign(private_keys["ES256"], DATA)
    es384_public = private_keys["ES384"].public_key()
    assert not ALGORITHMS["ES256"].fits(es384_public)
    assert not ALGORITHMS["ES256"].verify(es384_public, es256_signature, DATA)
    assert not ALGORITHMS["EdDSA"].verify(private_keys["RS256"].public_key(), es256_signature, DATA)


def test_rs256_signature_does_not_verify_as_ps256(private_keys: dict[str, PrivateKey]) -> None:
    signature = ALGORITHMS["RS256"].sign(private_keys["RS256"], DATA)
    assert not ALGORITHMS["PS256"].verify(private_keys["RS256"].public_key(), signature, DATA)


def test_signing_with_a_key_that_does_not_fit_the_algorithm_is_refused(
    private_keys: dict[str, PrivateKey],
) -> None:
    with pytest.raises(ValueError, match="does not fit"):
        ALGORITHMS["ES384"].sign(private_keys["ES256"], DATA)


def test_rsa_4096_key_round_trips_through_pem_and_jwk() -> None:
    key = generate_private_key("PS256", rsa_bits=4096)
    assert isinstance(key, rsa.RSAPrivateKey)
    assert key.key_size == 4096
    reloaded = private_key_from_pem(private_key_to_pem(key))
    signature = ALGORITHMS["PS256"].sign(reloaded, DATA)
    assert ALGORITHMS["PS256"].verify(public_key_from_jwk(public_jwk(key, "PS256")), signature, DATA)


def test_default_rsa_size_is_3072_and_odd_sizes_are_refused() -> None:
    key = generate_private_key("RS256")
    assert isinstance(key, rsa.RSAPrivateKey)
    assert key.key_size == 3072
    with pytest.raises(ValueError, match="rsa_bits"):
        generate_private_key("RS256", rsa_bits=1024)


@pytest.mark.parametrize("alg", ALL_ALGS)
def test_private_key_survives_a_pem_round_trip(alg: str, private_keys: dict[str, PrivateKey]) -> None:
    pem = private_key_to_pem(private_keys[alg])
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert public_jwk(private_key_from_pem(pem), alg) == public_jwk(private_keys[alg], alg)


def test_unreadable_pem_error_message_contains_no_key_material(private_keys: dict[str, PrivateKey]) -> None:
    pem = private_key_to_pem(private_keys["ES256"])
    damaged = pem.replace(b"\n", b"\n!", 2)
    with pytest.raises(InvalidKey) as caught:
        private_key_from_pem(damaged)
    body = b"".join(pem.splitlines()[1:-1]).decode()
    assert body[:16] not in str(caught.value)
    assert caught.value.__cause__ is None


def test_pem_of_unsupported_key_type_is_refused() -> None:
    from cryptography.hazmat.primitives.serialization import NoEncryption, PrivateFormat

    pem = X25519PrivateKey.generate().private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    with pytest.raises(InvalidKey, match="unsupported"):
        private_key_from_pem(pem)


# --- public JWK and thumbprint ------------------------------------------------------------------


def test_thumbprint_matches_rfc_7638_example() -> None:
    assert thumbprint(RFC7638_JWK) == RFC7638_KID


def test_thumbprint_ignores_optional_members() -> None:
    trimmed = {k: RFC7638_JWK[k] for k in ("n", "kty", "e")}
    assert thumbprint(trimmed) == thumbprint({**RFC7638_JWK, "use": "sig", "kid": "other"})


@pytest.mark.parametrize("alg", ALL_ALGS)
def test_public_jwk_carries_kid_alg_use_and_no_private_member(
    alg: str, private_keys: dict[str, PrivateKey]
) -> None:
    jwk = public_jwk(private_keys[alg], alg)
    expected_members = {
        "OKP": {"kty", "crv", "x"},
        "EC": {"kty", "crv", "x", "y"},
        "RSA": {"kty", "n", "e"},
    }[ALGORITHMS[alg].kty]
    assert set(jwk) == expected_members | {"kid", "alg", "use"}
    assert jwk["kid"] == thumbprint(jwk)
    assert len(jwk["kid"]) == 43
    assert (jwk["alg"], jwk["use"]) == (alg, "sig")


def test_public_jwk_of_private_and_public_key_are_identical(private_keys: dict[str, PrivateKey]) -> None:
    key = private_keys["ES384"]
    assert public_jwk(key, "ES384") == public_jwk(key.public_key(), "ES384")


def test_public_jwk_refuses_a_key_that_does_not_fit_the_algorithm(
    private_keys: dict[str, PrivateKey],
) -> None:
    with pytest.raises(InvalidKey):
        public_jwk(private_keys["ES256"], "RS256")


def test_rfc_7638_example_key_is_accepted_as_a_public_key() -> None:
    key = public_key_from_jwk(RFC7638_JWK)
    assert isinstance(key, rsa.RSAPublicKey)
    assert key.key_size == 2048


# --- JWKs we refuse -----------------------------------------------------------------------------


def test_rsa_key_below_2048_bits_is_refused() -> None:
    # A weak key is the point of this test.
    small_key = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505
    small = small_key.public_key().public_numbers()
    jwk = {"kty": "RSA", "n": b64url_encode(small.n.to_bytes(128, "big")), "e": "AQAB"}
    with pytest.raises(InvalidKey, match="2048"):
        public_key_from_jwk(jwk)


@pytest.mark.parametrize("e", ["AQAA", "AQ", ""])  # even, 1, empty (0)
def test_rsa_key_with_bad_exponent_is_refused(e: str) -> None:
    with pytest.raises(InvalidKey):
        public_key_from_jwk({**RFC7638_JWK, "e": e})


@pytest.mark.parametrize("crv", ["P-256", "P-384"])
def test_ec_point_off_the_curve_is_refused(crv: str) -> None:
    jwk = ec_jwk(crv)
    y = b64url_decode(jwk["y"])
    jwk["y"] = b64url_encode(y[:-1] + bytes([y[-1] ^ 1]))
    with pytest.raises(InvalidKey, match="not on"):
        public_key_from_jwk(jwk)


def test_ec_coordinate_equal_to_the_field_prime_is_refused() -> None:
    from jwt_trust.algorithms import EC_CURVES

    jwk = ec_jwk("P-256")
    jwk["x"] = b64url_encode(EC_CURVES["P-256"].prime.to_bytes(32, "big"))
    with pytest.raises(InvalidKey, match="not on"):
        public_key_from_jwk(jwk)


def test_ec_coordinate_with_wrong_length_is_refused() -> None:
    jwk = ec_jwk("P-256")
    jwk["x"] = b64url_encode(b"\x00" + b64url_decode(jwk["x"]))
    with pytest.raises(InvalidKey, match="exactly 32 bytes"):
        public_key_from_jwk(jwk)


def test_ec_key_on_an_unsupported_curve_is_refused() -> None:
    for crv in ("P-192", "P-224", "secp256k1", "p-256"):
        with pytest.raises(InvalidKey, match="crv"):
            public_key_from_jwk({**ec_jwk("P-256"), "crv": crv})


def test_x25519_okp_key_is_refused() -> None:
    raw = X25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    with pytest.raises(InvalidKey, match="Ed25519"):
        public_key_from_jwk({"kty": "OKP", "crv": "X25519", "x": b64url_encode(raw)})


def test_ed25519_key_of_wrong_length_is_refused() -> None:
    with pytest.raises(InvalidKey, match="32 bytes"):
        public_key_from_jwk({"kty": "OKP", "crv": "Ed25519", "x": b64url_encode(b"\x01" * 31)})


@pytest.mark.parametrize("member", ["d", "p", "q", "dp", "dq", "qi", "k"])
def test_jwk_carrying_a_private_member_is_refused(member: str) -> None:
    with pytest.raises(InvalidKey, match="private"):
        public_key_from_jwk({**ec_jwk(), member: "AAAA"})


def test_padded_base64url_in_a_jwk_is_refused() -> None:
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": b64url_encode(b"\x01" * 32) + "="}
    with pytest.raises(InvalidKey, match="base64url"):
        public_key_from_jwk(jwk)


@pytest.mark.parametrize("kty", ["oct", "RSA-PSS", None, 1])
def test_unsupported_or_missing_kty_is_refused(kty: object) -> None:
    with pytest.raises(InvalidKey, match="kty"):
        public_key_from_jwk({"kty": kty, "x": "AAAA"})


def test_jwk_member_that_is_not_a_string_is_refused() -> None:
    with pytest.raises(InvalidKey, match="not a string"):
        public_key_from_jwk({"kty": "RSA", "n": 12345, "e": "AQAB"})


# --- ECDSA signature encoding -------------------------------------------------------------------


def test_der_encoded_es256_signature_is_refused(private_keys: dict[str, PrivateKey]) -> None:
    key = private_keys["ES256"]
    raw = ALGORITHMS["ES256"].sign(key, DATA)
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    assert ALGORITHMS["ES256"].verify(key.public_key(), raw, DATA)
    assert not ALGORITHMS["ES256"].verify(key.public_key(), der, DATA)


@pytest.mark.parametrize("alg", ["ES256", "ES384"])
def test_all_zero_ecdsa_signature_is_refused(alg: str, private_keys: dict[str, PrivateKey]) -> None:
    size = ALGORITHMS[alg].signature_size
    assert size is not None
    assert not ALGORITHMS[alg].verify(private_keys[alg].public_key(), bytes(size), DATA)


def test_ecdsa_signature_with_r_or_s_equal_to_the_curve_order_is_refused(
    private_keys: dict[str, PrivateKey],
) -> None:
    from jwt_trust.algorithms import EC_CURVES

    key = private_keys["ES256"]
    raw = ALGORITHMS["ES256"].sign(key, DATA)
    order = EC_CURVES["P-256"].order.to_bytes(32, "big")
    assert not ALGORITHMS["ES256"].verify(key.public_key(), order + raw[32:], DATA)
    assert not ALGORITHMS["ES256"].verify(key.public_key(), raw[:32] + order, DATA)


# --- base64url and algorithm names --------------------------------------------------------------


@pytest.mark.parametrize("data", [b"", b"\x00", b"\xff\xfe", b"\xfb\xff\xbf", bytes(range(256))])
def test_base64url_round_trips(data: bytes) -> None:
    encoded = b64url_encode(data)
    assert "=" not in encoded
    assert b64url_decode(encoded) == data


@pytest.mark.parametrize(
    "text",
    ["AQ==", "AQ=", "+/8", "A B", "AQ\n", "A", "AR", "AAB", "Ã©", "////"],
    ids=[
        "padding",
        "partial padding",
        "plus and slash",
        "space",
        "newline",
        "length 1",
        "trailing bits in 2",
        "trailing bits in 3",
        "non-ascii",
        "slash",
    ],
)
def test_non_canonical_base64url_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="base64url"):
        b64url_decode(text)


def test_ed25519_is_normalised_to_eddsa_and_unknown_names_are_refused() -> None:
    assert normalise_algorithm("Ed25519") == "EdDSA"
    assert normalise_algorithm("ES384") == "ES384"
    assert normalise_algorithm("ES512") == "ES512"
    assert ALGORITHMS["Ed25519"].name == "Ed25519"
    for bad in ("none", "HS256", "es256", "ES521", "ES256K", "Ed448", "RSA-OAEP"):
        with pytest.raises(ValueError, match="unsupported"):
            normalise_algorithm(bad)


# --- interoperability ---------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["EdDSA", "ES256", "ES384", "PS256", "RS256"])
def test_signatures_interoperate_with_pyjwt_in_both_directions(
    alg: str, private_keys: dict[str, PrivateKey]
) -> None:
    import jwt as pyjwt

    key = private_keys[alg]
    header = b64url_encode(b'{"alg":"' + alg.encode() + b'"}')
    payload = b64url_encode(b'{"sub":"alice"}')
    signing_input = f"{header}.{payload}".encode()
    ours = f"{header}.{payload}.{b64url_encode(ALGORITHMS[alg].sign(key, signing_input))}"
    assert pyjwt.decode(ours, key.public_key(), algorithms=[alg]) == {"sub": "alice"}

    theirs = pyjwt.encode({"sub": "alice"}, key, algorithm=alg)
    their_input, _, their_signature = theirs.rpartition(".")
    assert ALGORITHMS[alg].verify(key.public_key(), b64url_decode(their_signature), their_input.encode())
