"""Verifier speed, side by side in one process: the raw signature check, our TrustStore, and the peers.

For each algorithm a pool of distinct tokens (one key, one header, different ``jti``) is minted; each
round every contender verifies the same few tokens (``--batch``, timed together), in a new shuffled
order each round, so that machine noise hits them all alike. ``--batch 1`` times every call on its
own, right after another library's call: the cold-cache case, where the Python around a signature
check costs the most (higher ratios for every pure-Python contender). Distinct tokens keep our repeated-token
cache out of the "jwt-trust" column (it also passes ``use_cache=False``); the "jwt-trust (repeat)"
column verifies one token again and again, the cached path.

Printed per contender: the median microseconds per verification, and the median over rounds of its
time divided by raw's time on the same tokens in the same round. "raw" is cryptography's verify call
alone, on a loaded key, with the signature already decoded (already DER for ECDSA) and the signing
input already sliced: nothing a verifier does per token is cheaper. "floor" is the least a plain
Python verifier does with a token, checking no rule at all: split it, decode the signature (to DER for
ECDSA), check it, decode the claims and parse their JSON. Every library is asked for its strictest
useful settings (algorithm allow-list, issuer, audience, exp). The first line says whether jwt-trust's
C twin (``jwt_trust._speedups``) is in use; ``JWT_TRUST_PURE_PYTHON=1`` measures the Python reference.

    python benchmarks/verify.py [--rounds 150] [--batch 20] [--only EdDSA,ES256] [--no-peers]
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from jwt_trust import _hotpath
from jwt_trust.algorithms import ALGORITHMS
from jwt_trust.keys import b64url_encode, generate_private_key, public_jwk, public_key_from_jwk
from jwt_trust.verifier import TrustStore

ISSUER, AUDIENCE = "https://issuer.bench", "api://bench"
CASES = [
    ("EdDSA", None),
    ("ES256", None),
    ("ES384", None),
    ("ES512", None),
    *((alg, 2048) for alg in ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")),
    ("RS256", 4096),
]
PEERS = ("PyJWT", "jwcrypto", "joserfc", "authlib")
POOL = 64  # distinct tokens per algorithm

Verify = Callable[[str], object]


def _tokens(alg: str, bits: int | None) -> tuple[list[str], dict[str, Any]]:
    key = generate_private_key(alg, rsa_bits=bits or 2048)
    jwk = public_jwk(key, alg)
    now = int(time.time())
    header = {"alg": alg, "kid": jwk["kid"], "typ": "JWT"}

    def segment(value: object) -> str:
        return b64url_encode(json.dumps(value, separators=(",", ":")).encode())

    tokens = []
    for n in range(POOL):
        claims = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": "bench",
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
            "jti": f"bench-{n:08d}",
        }
        signing_input = segment(header) + "." + segment(claims)
        signature = ALGORITHMS[alg].sign(key, signing_input.encode())
        tokens.append(signing_input + "." + b64url_encode(signature))
    return tokens, jwk


def _cryptography_verify(alg: str, jwk: dict[str, Any]) -> tuple[Callable[..., None], tuple[Any, ...]]:
    """cryptography's verify bound to the loaded key, and the arguments it takes after (signature, data):
    the hash and padding objects of the algorithm table, which are cryptography's own."""
    public: Any = public_key_from_jwk(jwk)
    return public.verify, ALGORITHMS[alg].parameters


def _signature_bytes(alg: str, encoded: str) -> bytes:
    """A signature segment decoded into what cryptography verifies: DER for ECDSA's R || S."""
    signature = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
    if alg.startswith("ES"):
        half = len(signature) // 2
        r, s = int.from_bytes(signature[:half], "big"), int.from_bytes(signature[half:], "big")
        signature = encode_dss_signature(r, s)
    return signature


def _raw(alg: str, jwk: dict[str, Any], tokens: list[str]) -> Verify:
    """The signature check alone: cryptography's verify on a loaded key with each token's signature
    already decoded (and, for ECDSA, already in the DER form cryptography wants) and its signing input
    already sliced, all prepared before timing. Nothing a verifier does per token is cheaper."""
    verify, extra = _cryptography_verify(alg, jwk)
    prepared: dict[str, tuple[bytes, bytes]] = {}
    for token in tokens:
        signing_input, _, encoded = token.rpartition(".")
        prepared[token] = (_signature_bytes(alg, encoded), signing_input.encode())
    return lambda token: verify(*prepared[token], *extra)


def _floor(alg: str, jwk: dict[str, Any]) -> Verify:
    """What no JWT verifier can skip, written plainly and checking no rule: split the token, decode the
    signature (to DER for ECDSA), check it, decode the claims and parse their JSON."""
    verify, extra = _cryptography_verify(alg, jwk)

    def floor(token: str) -> object:
        header, payload, encoded = token.split(".")
        # raises InvalidSignature if the token were bad
        verify(_signature_bytes(alg, encoded), f"{header}.{payload}".encode(), *extra)
        return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))

    return floor


def _contenders(alg: str, jwk: dict[str, Any], tokens: list[str], peers: bool) -> dict[str, Verify]:
    store = TrustStore.from_jwks({"keys": [jwk]}, issuer=ISSUER, algorithms=(alg,))
    repeat_store = TrustStore.from_jwks({"keys": [jwk]}, issuer=ISSUER, algorithms=(alg,))
    repeat_token = tokens[0]
    contenders: dict[str, Verify] = {
        "raw": _raw(alg, jwk, tokens),
        "floor": _floor(alg, jwk),
        "jwt-trust": lambda token: store.verify(token, audience=AUDIENCE, use_cache=False),
        # Ignores its argument: always the same token, so every call after the first is a cache hit.
        "jwt-trust (repeat)": lambda _token: repeat_store.verify(repeat_token, audience=AUDIENCE),
    }
    if not peers:
        return contenders

    import jwt as pyjwt  # PyJWT

    pyjwt_key = pyjwt.PyJWK(jwk)
    contenders["PyJWT"] = lambda token: pyjwt.decode(
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
    contenders["jwcrypto"] = lambda token: (
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

    def joserfc_verify(token: str) -> object:
        decoded = joserfc_jwt.decode(token, joserfc_keys, algorithms=[alg])
        registry.validate(decoded.claims)
        return decoded.claims

    contenders["joserfc"] = joserfc_verify

    from authlib.jose import JsonWebToken, JWTClaims

    authlib_jwt = JsonWebToken([alg])

    def authlib_verify(token: str) -> object:
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


class Timings:
    """Microseconds per verification: one sample per contender per round, a round being one token
    verified once by every contender."""

    def __init__(self, samples: dict[str, list[float]]):
        self.samples = samples

    def median(self, name: str) -> float:
        return statistics.median(self.samples[name])

    def ratio(self, name: str, to: str = "raw") -> float:
        """Median over rounds of name's time over to's time on the same token in the same round:
        paired, so whatever slows the machine down for a moment hits both sides of each ratio."""
        return statistics.median(a / b for a, b in zip(self.samples[name], self.samples[to], strict=True))


def _measure(contenders: dict[str, Verify], tokens: list[str], rounds: int, batch: int) -> Timings:
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for function in contenders.values():  # warm up, and prove each one accepts every token
        for token in tokens:
            function(token)
    order = list(contenders.items())
    shuffle = random.Random(7).shuffle  # a fixed seed: reruns time the same sequence
    clock = time.perf_counter_ns
    for round_number in range(rounds):
        first = round_number * batch
        round_tokens = [tokens[(first + i) % len(tokens)] for i in range(batch)]
        # Every contender verifies the same tokens in each round, in a new order each round. With
        # --batch 1 each call is timed on its own right after another contender's call: the cold
        # caches of a busy server, where the Python around a signature check costs the most.
        shuffle(order)
        for name, function in order:
            started = clock()
            for token in round_tokens:
                function(token)
            samples[name].append((clock() - started) / 1000 / batch)
    return Timings(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=150)
    parser.add_argument("--batch", type=int, default=20, help="tokens per contender per round")
    parser.add_argument("--only", help="comma-separated labels, e.g. EdDSA,ES256,RS256-2048")
    parser.add_argument("--no-peers", action="store_true", help="only raw, floor and jwt-trust")
    args = parser.parse_args()

    print(
        f"jwt-trust hot path: {'C (jwt_trust._speedups)' if _hotpath.ACCELERATED else 'pure Python'}; "
        f"{args.rounds} rounds of {args.batch} token(s) per contender"
    )
    rows: list[tuple[str, Timings]] = []
    for alg, bits in CASES:
        label = f"{alg}-{bits}" if bits else alg
        if args.only and label not in args.only.split(","):
            continue
        tokens, jwk = _tokens(alg, bits)
        contenders = _contenders(alg, jwk, tokens, peers=not args.no_peers)
        rows.append((label, _measure(contenders, tokens, args.rounds, args.batch)))

    names = list(rows[0][1].samples)
    print(f"{'algorithm':<12}" + "".join(f"{name:>22}" for name in names))
    for label, timings in rows:
        cells = "".join(f"{timings.median(n):>12.1f}us {timings.ratio(n):>5.2f}x" for n in names)
        print(f"{label:<12}{cells}")
    summary = []
    for label, timings in rows:
        line = f"{label}: {timings.ratio('jwt-trust'):.2f}x raw (floor {timings.ratio('floor'):.2f}x)"
        if "PyJWT" in timings.samples:
            fastest_peer = min(PEERS, key=timings.median)
            line += (
                f", {timings.ratio(fastest_peer, to='jwt-trust'):.1f}x faster than the fastest peer"
                f" ({fastest_peer}), repeat {timings.ratio('PyJWT', to='jwt-trust (repeat)'):.0f}x"
                " faster than PyJWT"
            )
        summary.append(line)
    print("summary: " + "; ".join(summary))


if __name__ == "__main__":
    main()
