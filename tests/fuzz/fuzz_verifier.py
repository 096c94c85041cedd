"""Coverage-guided fuzz target (atheris / libFuzzer) for the offline verifier.

Why: the verifier parses attacker-controlled bytes on every request. The property checked here is the
verifier's contract: whatever the input, it ends in a typed rejection (an ``InvalidToken`` subclass for
tokens, ``TrustStoreError`` or ``InvalidKey`` for trust data) or a valid result; any other exception,
a hang (libFuzzer ``-timeout``) or a memory blow-up (``-rss_limit_mb``) is reported as a crash with the
input that caused it.

The first byte of an input picks one of five modes (the rest is the mode's argument):

0. raw token bytes, verified in full and in signature-only mode;
1. a token whose header and claims are fuzzed JSON text (often inside a plausible prefix) but whose
   signature is genuine, so the fuzzer reaches the claim rules behind the signature check;
2. a JWK Set (bytes) loaded with ``TrustStore.from_jwks``;
3. a trust directory (``trust.json`` and one issuer JWK Set) parsed and loaded;
4. one JWK given to ``public_key_from_jwk``.

Run it with ``bash tools/fuzz.sh [SECONDS]``, which seeds the corpus (``--write-seeds DIR``) and
gives libFuzzer the JSON/JOSE dictionary ``tests/fuzz/jose.dict``. pytest does not collect this file:
the bounded CI run is ``tests/unit/test_fuzz_verifier.py``. Keys are generated at start-up.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Any

import atheris

with atheris.instrument_imports(include=["jwt_trust"]):
    from jwt_trust import errors
    from jwt_trust.algorithms import ALGORITHMS
    from jwt_trust.keys import b64url_encode, generate_private_key, public_jwk, public_key_from_jwk
    from jwt_trust.projection import IssuerTrust, PolicyTrust, parse_trust_files, render_configmap_data
    from jwt_trust.verifier import TrustStore

NOW = 1_800_000_000
ISS_A = "https://a.example"
ISS_B = "https://b.example"

KEYS: list[tuple[str, Any, dict[str, str]]] = []
for _alg in ("ES256", "EdDSA", "RS256", "ES512"):
    _private = generate_private_key(_alg, rsa_bits=2048)
    KEYS.append((_alg, _private, public_jwk(_private.public_key(), _alg)))
# The RS256 key again for PS384, under the same kid (one key, not an ambiguous kid).
KEYS.append(("PS384", KEYS[2][1], public_jwk(KEYS[2][1].public_key(), "PS384")))

STORE = TrustStore.from_trust(
    PolicyTrust(
        policy="fuzz",
        issuers=(
            IssuerTrust(
                ref="ns/a",
                issuer=ISS_A,
                keys=(KEYS[0][2], KEYS[1][2], KEYS[3][2]),
                revoked_jtis=(("j", NOW),),
            ),
            IssuerTrust(ref="ns/b", issuer=ISS_B, keys=(KEYS[2][2], KEYS[4][2]), revoked_kids=("nope",)),
        ),
        audiences=("api",),
        algorithms=("ES256", "ES512", "EdDSA", "RS256", "PS384", "Ed25519"),
        required_claims=("sub",),
    )
)


def _verify(token: bytes) -> None:
    try:
        claims = STORE.verify(token, now=NOW)
    except errors.InvalidToken:
        pass
    else:
        assert isinstance(claims, dict)
    try:
        header, payload = STORE.verify_signature(token)
    except errors.InvalidToken:
        pass
    else:
        assert isinstance(header, dict)
        assert isinstance(payload, bytes)


def _signed_token(flags: int, header: bytes, payload: bytes) -> bytes:
    alg, private, jwk = KEYS[flags % len(KEYS)]
    if flags & 0x10:
        header = f'{{"alg":"{alg}","kid":"{jwk["kid"]}"'.encode() + header + b"}"
    if flags & 0x20:
        payload = f'{{"iss":"{ISS_A}","sub":"s","aud":"api","exp":{NOW + 60}'.encode() + payload + b"}"
    signing_input = f"{b64url_encode(header)}.{b64url_encode(payload)}".encode()
    signature = ALGORITHMS[alg].sign(private, signing_input)
    return signing_input + b"." + b64url_encode(signature).encode()


def _trust_directory(trust: bytes, jwks: bytes) -> None:
    try:
        trust_policy, _revision = parse_trust_files({"trust.json": trust, "issuer.ns.a.jwks.json": jwks})
    except errors.TrustStoreError:
        return
    TrustStore.from_trust(trust_policy)


def test_one_input(data: bytes) -> None:
    """One input: the first byte picks the mode, the rest is its argument (NUL separates two parts).

    A plain layout rather than atheris.FuzzedDataProvider, so that the seed corpus and libFuzzer's
    JSON dictionary map directly onto the text that the verifier parses.
    """
    if not data:
        return
    mode, rest = data[0] % 5, data[1:]
    if mode == 0:
        _verify(rest)
    elif mode == 1:
        flags = rest[0] if rest else 0
        header, _sep, payload = rest[1:].partition(b"\x00")
        _verify(_signed_token(flags, header, payload))
    elif mode == 2:
        with contextlib.suppress(errors.TrustStoreError, errors.InvalidKey):
            TrustStore.from_jwks(rest)
    elif mode == 3:
        trust, _sep, jwks = rest.partition(b"\x00")
        _trust_directory(trust, jwks)
    else:
        try:
            jwk = json.loads(rest)
        except (ValueError, RecursionError):
            return
        with contextlib.suppress(errors.InvalidKey):
            public_key_from_jwk(jwk)


def write_seeds(directory: Path) -> None:
    """A starting corpus: one well-formed input per mode, so mutation starts from the real formats."""
    directory.mkdir(parents=True, exist_ok=True)
    alg, _private, jwk = KEYS[0]
    header = json.dumps({"alg": alg, "kid": jwk["kid"], "typ": "JWT"}).encode()
    claims = json.dumps({"iss": ISS_A, "sub": "s", "aud": "api", "exp": NOW + 60, "jti": "k"}).encode()
    files = render_configmap_data(
        PolicyTrust(policy="p", issuers=(IssuerTrust(ref="ns/a", issuer=ISS_A, keys=(jwk,)),)), revision=1
    )
    seeds = {
        "token": b"\x00" + _signed_token(0, header, claims),
        "signed": b"\x01\x00" + header + b"\x00" + claims,
        "signed-prefixed": b"\x01\x30" + b',"typ":"JWT"' + b"\x00" + b',"jti":"k"',
        "jwks": b"\x02" + json.dumps({"keys": [j for _a, _k, j in KEYS]}).encode(),
        "trust": b"\x03" + files["trust.json"].encode() + b"\x00" + files["issuer.ns.a.jwks.json"].encode(),
        "jwk": b"\x04" + json.dumps(KEYS[2][2]).encode(),
    }
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
