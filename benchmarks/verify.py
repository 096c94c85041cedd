"""Verifier speed, side by side in one process: the raw signature check, our TrustStore, and the peers.

For each algorithm one token is minted and verified repeatedly by each contender, interleaved round by
round so that machine noise hits them all alike. Printed: the median microseconds per verification and
the ratio to the raw `cryptography` verify of the same signature with an already-loaded key. Every
library is asked for its strictest useful settings (algorithm allow-list, issuer, audience, exp).

    python benchmarks/verify.py [--rounds 15] [--per-round 200]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from jwt_trust.algorithms import ALGORITHMS
from jwt_trust.keys import b64url_decode, b64url_encode, generate_private_key, public_jwk, public_key_from_jwk
from jwt_trust.verifier import TrustStore

ISSUER, AUDIENCE = "https://issuer.bench", "api://bench"
CASES = [("EdDSA", None), ("ES256", None), ("ES384", None), ("RS256", 2048), ("PS256", 2048), ("RS256", 4096)]


def _token(alg: str, bits: int | None) -> tuple[str, dict[str, Any]]:
    key = generate_private_key(alg, rsa_bits=bits or 2048)
    jwk = public_jwk(key, alg)
    now = int(time.time())
    header = {"alg": alg, "kid": jwk["kid"], "typ": "JWT"}
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "bench", "iat": now, "nbf": now, "exp": now + 3600}

    def segment(value: object) -> str:
        return b64url_encode(json.dumps(value, separators=(",", ":")).encode())

    signing_input = segment(header) + "." + segment(claims)
    token = signing_input + "." + b64url_encode(ALGORITHMS[alg].sign(key, signing_input.encode()))
    return token, jwk


def _contenders(alg: str, token: str, jwk: dict[str, Any]) -> dict[str, Callable[[], object]]:
    public: Any = public_key_from_jwk(jwk)
    signing_input, _, signature_b64 = token.rpartition(".")
    signature, data = b64url_decode(signature_b64), signing_input.encode()
    # "raw" is the one cryptography call a signature check cannot avoid, with the key already loaded
    # and the signature already decoded (for ECDSA, the R||S to DER conversion cryptography needs).
    if alg == "EdDSA":
        raw_call: Callable[[], None] = lambda: public.verify(signature, data)
    elif alg.startswith("ES"):
        half = len(signature) // 2
        scheme = ec.ECDSA(hashes.SHA256() if alg == "ES256" else hashes.SHA384())
        raw_call = lambda: public.verify(
            encode_dss_signature(
                int.from_bytes(signature[:half], "big"), int.from_bytes(signature[half:], "big")
            ),
            data,
            scheme,
        )
    else:
        pad = padding.PKCS1v15() if alg == "RS256" else padding.PSS(padding.MGF1(hashes.SHA256()), 32)
        raw_call = lambda: public.verify(signature, data, pad, hashes.SHA256())

    def raw() -> object:
        raw_call()  # raises InvalidSignature if the token were bad
        return None

    store = TrustStore.from_jwks({"keys": [jwk]}, issuer=ISSUER, algorithms=(alg,))
    repeat_store = TrustStore.from_jwks({"keys": [jwk]}, issuer=ISSUER, algorithms=(alg,))
    # Our fresh path must not be served by the repeated-token cache: a distinct store per call would
    # also measure key parsing, so we use one store and bypass the cache with its documented switch.
    contenders: dict[str, Callable[[], object]] = {
        "raw": raw,
        "jwt-trust": lambda: store.verify(token, audience=AUDIENCE, use_cache=False),
        "jwt-trust (repeat)": lambda: repeat_store.verify(token, audience=AUDIENCE),
    }

    import jwt as pyjwt  # PyJWT

    pyjwt_key = pyjwt.PyJWK(jwk)
    contenders["PyJWT"] = lambda: pyjwt.decode(
        token,
        pyjwt_key,
        algorithms=[alg],
        audience=AUDIENCE,
        issuer=ISSUER,
        options={"require": ["exp", "iss", "aud"]},
    )

    from jwcrypto import jwk as jwcrypto_jwk
    from jwcrypto import jwt as jwcrypto_jwt

    jwcrypto_key = jwcrypto_jwk.JWK(**jwk)
    contenders["jwcrypto"] = lambda: (
        jwcrypto_jwt.JWT(
            jwt=token,
            key=jwcrypto_key,
            algs=[alg],
            check_claims={"iss": ISSUER, "aud": AUDIENCE, "exp": None},
        ).claims
    )

    from joserfc import jwt as joserfc_jwt
    from joserfc.jwk import KeySet

    joserfc_keys = KeySet.import_key_set({"keys": [jwk]})
    registry = joserfc_jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": ISSUER},
        aud={"essential": True, "value": AUDIENCE},
        exp={"essential": True},
    )

    def joserfc_verify() -> object:
        decoded = joserfc_jwt.decode(token, joserfc_keys, algorithms=[alg])
        registry.validate(decoded.claims)
        return decoded.claims

    contenders["joserfc"] = joserfc_verify

    from authlib.jose import JsonWebToken, JWTClaims

    authlib_jwt = JsonWebToken([alg])

    def authlib_verify() -> object:
        claims: JWTClaims = authlib_jwt.decode(
            token,
            jwk,
            claims_options={
                "iss": {"essential": True, "value": ISSUER},
                "aud": {"essential": True, "value": AUDIENCE},
                "exp": {"essential": True},
            },
        )
        claims.validate()
        return claims

    contenders["authlib"] = authlib_verify
    return contenders


def _measure(contenders: dict[str, Callable[[], object]], rounds: int, per_round: int) -> dict[str, float]:
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for function in contenders.values():  # warm up, and prove each one accepts the token
        function()
    for _ in range(rounds):
        for name, function in contenders.items():
            started = time.perf_counter()
            for _ in range(per_round):
                function()
            samples[name].append((time.perf_counter() - started) / per_round * 1e6)
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--per-round", type=int, default=200)
    args = parser.parse_args()

    rows: list[tuple[str, dict[str, float]]] = []
    for alg, bits in CASES:
        label = f"{alg}-{bits}" if bits else alg
        token, jwk = _token(alg, bits)
        per_round = max(20, args.per_round // (10 if bits == 4096 else 1))
        rows.append((label, _measure(_contenders(alg, token, jwk), args.rounds, per_round)))

    names = list(rows[0][1])
    print(f"{'algorithm':<12}" + "".join(f"{name:>22}" for name in names))
    for label, medians in rows:
        raw = medians["raw"]
        cells = "".join(f"{medians[n]:>12.1f}us {medians[n] / raw:>5.2f}x" for n in names)
        print(f"{label:<12}{cells}")
    summary = []
    for label, medians in rows:
        peers = min(medians[n] for n in ("PyJWT", "jwcrypto", "joserfc", "authlib"))
        summary.append(
            f"{label}: {medians['jwt-trust'] / medians['raw']:.2f}x raw, "
            f"{peers / medians['jwt-trust']:.1f}x faster than the fastest peer, "
            f"repeat {medians['PyJWT'] / medians['jwt-trust (repeat)']:.0f}x faster than PyJWT"
        )
    print("summary: " + "; ".join(summary))


if __name__ == "__main__":
    main()
