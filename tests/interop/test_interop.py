"""Interop: our tokens and projected JWKS files verified by other stacks, and theirs by our verifier.

Why it exists: the point of publishing plain JWKS files is that any service, in any language, can
verify our tokens offline with the JOSE library it already uses. This module proves it for every
algorithm we support (EdDSA, ES256, ES384, ES512, PS256, PS384, PS512, RS256, RS384, RS512) and seven
libraries: go-jose v4, golang-jwt
v5 and jwx v3 (Go), jose (Node.js), PyJWT, jwcrypto and joserfc (Python).

What it guarantees, for each algorithm × library cell (each cell is one test):

- forward: tokens minted by ``jwt_trust.signer.Signer`` verify against the projected ``jwks.json``
  and against the per-issuer ``issuer.<ns>.<name>.jwks.json``, both written by
  ``jwt_trust.projection.render_configmap_data``; and the library rejects a tampered signature, an
  expired token, a wrong audience, and a token of a key withdrawn by revocation (while accepting the
  fresh key that replaced it, so the rejection is about the withdrawn kid, not a broken file);
- reverse: a token the library signs with a key we generated (the PKCS#8 PEM exactly as the signing
  Secret stores it) verifies with ``jwt_trust.verifier.TrustStore``, both from the per-issuer JWK Set
  (``from_jwks``) and from the whole projected directory (``from_directory``).

The Go and Node libraries run in two small batch programs (built and cached by ``build.sh``), each
started once per session with a job file of every case; the Python libraries run in-process. Private
keys exist only in a temporary directory and are never printed. Tokens are minted against the wall
clock, because PyJWT and jwcrypto always use it; the other libraries are given the same ``now``.
"""

from __future__ import annotations

import functools
import json
import re
import secrets
import subprocess
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import jwt as pyjwt
import pytest
from joserfc import jwk as joserfc_jwk
from joserfc import jwt as joserfc_jwt
from jwcrypto import jwk as jwcrypto_jwk  # type: ignore[import-untyped]
from jwcrypto import jwt as jwcrypto_jwt

from jwt_trust.errors import InvalidToken
from jwt_trust.keys import b64url_decode, b64url_encode, generate_private_key, public_jwk
from jwt_trust.projection import (
    DEFAULT_ALGORITHMS,
    JWKS_FILE,
    IssuerTrust,
    PolicyTrust,
    issuer_jwks_key,
    render_configmap_data,
)
from jwt_trust.rotation import KeyRecord
from jwt_trust.signer import Signer, render_secret_data
from jwt_trust.verifier import TrustStore

ALGORITHMS = DEFAULT_ALGORITHMS  # every algorithm we verify, under its canonical name
GO_LIBRARIES = ("go-jose", "golang-jwt", "jwx")
NODE_LIBRARIES = ("jose (node)",)
PYTHON_LIBRARIES = ("PyJWT", "jwcrypto", "joserfc")
LIBRARIES = GO_LIBRARIES + NODE_LIBRARIES + PYTHON_LIBRARIES
# Libraries that cannot handle an algorithm: the cell is "n/a" with the reason, and the test asserts
# that the library really does refuse it. Every library pinned today supports all ten algorithms.
UNSUPPORTED: dict[tuple[str, str], str] = {}

FORWARD = "our tokens + projected JWKS -> verified by (every case as expected)"
REVERSE = "tokens signed by -> verified by jwt_trust.TrustStore"

NAMESPACE = "idp"
AUDIENCE = "api://orders"
OTHER_AUDIENCE = "api://somewhere-else"
TYP = "at+jwt"
LIFETIME = 900
LEEWAY = 60
HELPER_TIMEOUT_SECONDS = 120
# go-jose says "error in cryptographic primitive"; jwcrypto, given a key set, reports a signature that
# no key verifies as "Missing Key".
TAMPERED_ERRORS = "signature|verif|cryptographic|missing key"
KTY: dict[str, Literal["OKP", "EC", "RSA"]] = {
    "EdDSA": "OKP",
    **dict.fromkeys(("ES256", "ES384", "ES512"), "EC"),
    **dict.fromkeys(("PS256", "PS384", "PS512", "RS256", "RS384", "RS512"), "RSA"),
}


class MatrixRecorder(Protocol):
    def record(self, direction: str, alg: str, library: str, outcome: str) -> None: ...

    def note(self, text: str) -> None: ...


def issuer_ref(alg: str) -> str:
    return f"{NAMESPACE}/{alg.lower()}-issuer"


def issuer_url(alg: str) -> str:
    return f"https://{alg.lower()}.issuer.interop.test"


@dataclass(frozen=True)
class Case:
    """One token that every verifier checks; ``jwks`` is the projected file it is checked against."""

    id: str
    alg: str
    what: str
    token: str
    jwks: str
    accept: bool
    subject: str | None = None
    # For a rejection: a pattern the library's error must match (case-insensitive), so that a case
    # cannot pass because the library refused the token for some unrelated reason.
    reason: str | None = None

    def job(self, now: int) -> dict[str, Any]:
        return {
            "id": self.id,
            "token": self.token,
            "jwks": self.jwks,
            "alg": self.alg,
            "audience": AUDIENCE,
            "issuer": issuer_url(self.alg),
            "now": now,
        }


@dataclass(frozen=True)
class SignRequest:
    """What every library signs in the reverse direction (field names are the helpers' job format)."""

    id: str
    alg: str
    kid: str
    typ: str
    key: str  # path of the PKCS#8 PEM file
    iss: str
    sub: str
    aud: str
    iat: int
    exp: int
    jti: str


@dataclass(frozen=True)
class World:
    now: int
    before: Path  # the projected ConfigMap directory while every issuer's keys are trusted
    after: Path  # the same after each issuer revoked its active key
    cases: tuple[Case, ...]
    sign_requests: tuple[SignRequest, ...]


def _tamper(token: str) -> str:
    """Flip one bit in the middle of the decoded signature (not in the base64 padding bits)."""
    header, payload, signature = token.split(".")
    raw = bytearray(b64url_decode(signature))
    raw[len(raw) // 2] ^= 0x01
    return f"{header}.{payload}.{b64url_encode(bytes(raw))}"


def _header(token: str) -> dict[str, Any]:
    header: dict[str, Any] = json.loads(b64url_decode(token.split(".", maxsplit=1)[0]))
    return header


def _write_directory(directory: Path, data: dict[str, str]) -> None:
    directory.mkdir()
    for name, content in data.items():
        (directory / name).write_text(content)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    """Keys, Secrets, tokens and projected files for every algorithm, as the operator would make them.

    Per issuer (one per algorithm): an active key A and a next key N are published; tokens are minted
    with A. Revocation of A (which also drops N, as the operator does) leaves only a fresh key F.
    """
    root = tmp_path_factory.mktemp("interop")
    keys_dir = root / "private"
    keys_dir.mkdir(mode=0o700)
    now = int(time.time())
    before_issuers: list[IssuerTrust] = []
    after_issuers: list[IssuerTrust] = []
    minted: dict[str, dict[str, str]] = {}
    sign_requests: list[SignRequest] = []
    for alg in ALGORITHMS:
        active, upcoming, fresh = (generate_private_key(alg) for _ in range(3))
        active_jwk, upcoming_jwk, fresh_jwk = (public_jwk(key, alg) for key in (active, upcoming, fresh))
        active_record = KeyRecord(
            kid=active_jwk["kid"],
            alg=alg,
            created_at=now - 9000,
            published_at=now - 9000,
            activates_at=now - 7200,
        )
        upcoming_record = KeyRecord(
            kid=upcoming_jwk["kid"],
            alg=alg,
            created_at=now - 60,
            published_at=now - 60,
            activates_at=now + 86_400,
        )
        fresh_record = KeyRecord(
            kid=fresh_jwk["kid"], alg=alg, created_at=now - 5, published_at=now - 5, activates_at=now - 5
        )
        secret = render_secret_data(
            issuer=issuer_url(alg),
            max_token_lifetime=LIFETIME,
            records=(active_record, upcoming_record),
            private_keys={active_record.kid: active, upcoming_record.kid: upcoming},
        )
        after_secret = render_secret_data(
            issuer=issuer_url(alg),
            max_token_lifetime=LIFETIME,
            records=(fresh_record,),
            private_keys={fresh_record.kid: fresh},
        )
        signer = Signer.from_secret_data(secret)
        after_signer = Signer.from_secret_data(after_secret)
        good = signer.mint(subject=f"alice-{alg}", audience=AUDIENCE, typ=TYP, now=now)
        assert _header(good) == {"alg": alg, "kid": active_record.kid, "typ": TYP}
        minted[alg] = {
            "good": good,
            "tampered": _tamper(good),
            # Issued long enough ago that exp + leeway has passed for every verifier.
            "expired": signer.mint(subject=f"alice-{alg}", audience=AUDIENCE, typ=TYP, now=now - 3600),
            "wrong audience": signer.mint(subject=f"alice-{alg}", audience=OTHER_AUDIENCE, typ=TYP, now=now),
            "fresh": after_signer.mint(subject=f"carol-{alg}", audience=AUDIENCE, typ=TYP, now=now),
        }
        before_issuers.append(
            IssuerTrust(ref=issuer_ref(alg), issuer=issuer_url(alg), keys=(active_jwk, upcoming_jwk))
        )
        after_issuers.append(
            IssuerTrust(
                ref=issuer_ref(alg),
                issuer=issuer_url(alg),
                keys=(fresh_jwk,),
                revoked_kids=(active_record.kid,),
            )
        )
        # The other libraries get the private key exactly as the signing Secret stores it.
        pem_path = keys_dir / f"{alg}.pem"
        pem_path.touch(mode=0o600)
        pem_path.write_bytes(secret[f"{active_record.kid}.pem"])
        sign_requests.append(
            SignRequest(
                id=alg,
                alg=alg,
                kid=active_record.kid,
                typ=TYP,
                key=str(pem_path),
                iss=issuer_url(alg),
                sub=f"bob-{alg}",
                aud=AUDIENCE,
                iat=now,
                exp=now + 600,
                jti=secrets.token_urlsafe(12),
            )
        )

    def policy(issuers: list[IssuerTrust]) -> PolicyTrust:
        return PolicyTrust(
            policy="interop", issuers=tuple(issuers), audiences=(AUDIENCE,), typ=TYP, required_claims=("sub",)
        )

    before, after = root / "before", root / "after"
    _write_directory(before, render_configmap_data(policy(before_issuers), revision=1))
    _write_directory(after, render_configmap_data(policy(after_issuers), revision=2))

    cases: list[Case] = []
    for alg in ALGORITHMS:
        tokens = minted[alg]
        per_issuer = issuer_jwks_key(issuer_ref(alg))
        accepted = [  # (what, token, file, expected sub)
            ("our token against jwks.json", tokens["good"], before / JWKS_FILE, f"alice-{alg}"),
            (f"our token against {per_issuer}", tokens["good"], before / per_issuer, f"alice-{alg}"),
            ("fresh key after revocation", tokens["fresh"], after / per_issuer, f"carol-{alg}"),
        ]
        rejected = [  # (what, token, file, pattern the library's error must match)
            ("tampered signature", tokens["tampered"], before / JWKS_FILE, TAMPERED_ERRORS),
            ("expired", tokens["expired"], before / JWKS_FILE, "exp"),
            ("wrong audience", tokens["wrong audience"], before / per_issuer, "aud"),
            ("key withdrawn after revocation", tokens["good"], after / JWKS_FILE, "kid|key"),
        ]
        for what, token, jwks, subject in accepted:
            cases.append(Case(f"{alg}/{len(cases)}", alg, what, token, str(jwks), True, subject=subject))
        for what, token, jwks, reason in rejected:
            cases.append(Case(f"{alg}/{len(cases)}", alg, what, token, str(jwks), False, reason=reason))
    return World(now=now, before=before, after=after, cases=tuple(cases), sign_requests=tuple(sign_requests))


# --- the Python libraries ------------------------------------------------------------------------


def _verify_pyjwt(case: Case, jwks: str, now: int) -> str:
    # PyJWT has no JWKS-file key resolver (PyJWKClient fetches a URL), so select by kid by hand.
    key = pyjwt.PyJWKSet.from_json(jwks)[pyjwt.get_unverified_header(case.token)["kid"]]
    if key.algorithm_name != case.alg:
        raise ValueError("the key's alg is not the token's alg")
    claims = pyjwt.decode(
        case.token,
        key,
        algorithms=[case.alg],
        audience=AUDIENCE,
        issuer=issuer_url(case.alg),
        leeway=LEEWAY,
        options={"require": ["exp", "iss", "aud"]},
    )
    return str(claims["sub"])


def _verify_jwcrypto(case: Case, jwks: str, now: int) -> str:
    # Given a JWKSet, jwcrypto selects the key by the token's kid; its default leeway is 60 s.
    token = jwcrypto_jwt.JWT(
        jwt=case.token,
        key=jwcrypto_jwk.JWKSet.from_json(jwks),
        algs=[case.alg],
        check_claims={"iss": issuer_url(case.alg), "aud": AUDIENCE, "exp": None},
        expected_type="JWS",
    )
    return str(json.loads(token.claims)["sub"])


def _verify_joserfc(case: Case, jwks: str, now: int) -> str:
    token = joserfc_jwt.decode(
        case.token, joserfc_jwk.KeySet.import_key_set(json.loads(jwks)), algorithms=[case.alg]
    )
    registry = joserfc_jwt.JWTClaimsRegistry(
        now=now,
        leeway=LEEWAY,
        iss={"essential": True, "value": issuer_url(case.alg)},
        aud={"essential": True, "value": AUDIENCE},
        exp={"essential": True},
    )
    registry.validate(token.claims)
    return str(token.claims["sub"])


def _claims(request: SignRequest) -> dict[str, Any]:
    return {
        "iss": request.iss,
        "sub": request.sub,
        "aud": request.aud,
        "iat": request.iat,
        "nbf": request.iat,
        "exp": request.exp,
        "jti": request.jti,
    }


def _sign_pyjwt(request: SignRequest, pem: bytes) -> str:
    return pyjwt.encode(
        _claims(request), pem, algorithm=request.alg, headers={"kid": request.kid, "typ": request.typ}
    )


def _sign_jwcrypto(request: SignRequest, pem: bytes) -> str:
    token = jwcrypto_jwt.JWT(
        header={"alg": request.alg, "kid": request.kid, "typ": request.typ}, claims=_claims(request)
    )
    token.make_signed_token(jwcrypto_jwk.JWK.from_pem(pem))
    return str(token.serialize())


def _sign_joserfc(request: SignRequest, pem: bytes) -> str:
    key = joserfc_jwk.import_key(pem, KTY[request.alg])
    header = {"alg": request.alg, "kid": request.kid, "typ": request.typ}
    return joserfc_jwt.encode(header, _claims(request), key, algorithms=[request.alg])


PYTHON_VERIFIERS: dict[str, Callable[[Case, str, int], str]] = {
    "PyJWT": _verify_pyjwt,
    "jwcrypto": _verify_jwcrypto,
    "joserfc": _verify_joserfc,
}
PYTHON_SIGNERS: dict[str, Callable[[SignRequest, bytes], str]] = {
    "PyJWT": _sign_pyjwt,
    "jwcrypto": _sign_jwcrypto,
    "joserfc": _sign_joserfc,
}


def _run_python_library(
    library: str, alg: str, call: Callable[[], str], notes: list[str]
) -> tuple[str | None, str | None]:
    """Run one library call; its warnings become matrix notes instead of errors (filterwarnings=error)."""
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        try:
            value: str | None = call()
            error: str | None = None
        except Exception as exc:  # a rejection is an outcome here, whatever the library raises
            value, error = None, f"{type(exc).__name__}: {exc}"
    notes.extend(f"{library} warns for {alg}: {type(w.message).__name__}: {w.message}" for w in warned)
    return value, error


# --- running everything once ---------------------------------------------------------------------


@dataclass(frozen=True)
class Exchange:
    verified: dict[str, dict[str, dict[str, Any]]]  # case id -> library -> {ok, sub | error}
    signed: dict[str, dict[str, dict[str, Any]]]  # sign request id -> library -> {token | error}
    notes: tuple[str, ...]


@pytest.fixture(scope="module")
def exchange(world: World, interop_tools: Path, tmp_path_factory: pytest.TempPathFactory) -> Exchange:
    """Every case through every library and every sign request through every library, in one pass."""
    job_file = tmp_path_factory.mktemp("interop-job") / "job.json"
    job_file.write_text(
        json.dumps(
            {
                "verify": [case.job(world.now) for case in world.cases],
                "sign": [asdict(request) for request in world.sign_requests],
            }
        )
    )
    # Go and Node work in parallel with the Python libraries.
    helpers = {
        "Go": subprocess.Popen(
            [str(interop_tools / "interop-go"), str(job_file)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ),
        "Node": subprocess.Popen(
            ["node", str(interop_tools / "node" / "interop.mjs"), str(job_file)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ),
    }
    verified: dict[str, dict[str, dict[str, Any]]] = {case.id: {} for case in world.cases}
    signed: dict[str, dict[str, dict[str, Any]]] = {request.id: {} for request in world.sign_requests}
    notes: list[str] = []
    jwks_files = {path: Path(path).read_text() for path in {case.jwks for case in world.cases}}
    for case in world.cases:
        for library, verify in PYTHON_VERIFIERS.items():
            subject, error = _run_python_library(
                library,
                case.alg,
                functools.partial(verify, case, jwks_files[case.jwks], world.now),
                notes,
            )
            verified[case.id][library] = (
                {"ok": True, "sub": subject} if error is None else {"ok": False, "error": error}
            )
    for request in world.sign_requests:
        pem = Path(request.key).read_bytes()
        for library, sign in PYTHON_SIGNERS.items():
            token, error = _run_python_library(
                library,
                request.alg,
                functools.partial(sign, request, pem),
                notes,
            )
            # Only the exception's type: a key parser's message could quote the key.
            signed[request.id][library] = (
                {"token": token} if error is None else {"error": error.split(":")[0]}
            )

    for name, process in helpers.items():
        try:
            stdout, stderr = process.communicate(timeout=HELPER_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            pytest.fail(f"the {name} interop helper did not finish in {HELPER_TIMEOUT_SECONDS} s")
        if process.returncode != 0:
            pytest.fail(f"the {name} interop helper failed ({process.returncode}):\n{stderr[-3000:]}")
        output = json.loads(stdout)
        for case_id, by_library in output["verify"].items():
            verified[case_id].update(by_library)
        for request_id, by_library in output["sign"].items():
            signed[request_id].update(by_library)
    return Exchange(verified=verified, signed=signed, notes=tuple(dict.fromkeys(notes)))


@pytest.fixture(scope="module")
def matrix(interop_matrix: MatrixRecorder, exchange: Exchange) -> MatrixRecorder:
    for text in exchange.notes:
        interop_matrix.note(text)
    return interop_matrix


# --- the matrix ----------------------------------------------------------------------------------


def _forward_failures(world: World, exchange: Exchange, alg: str, library: str) -> list[str]:
    failures: list[str] = []
    for case in (c for c in world.cases if c.alg == alg):
        got = exchange.verified[case.id].get(library)
        if got is None:
            failures.append(f"{case.what}: no answer from the library")
        elif case.accept and not (got["ok"] and got.get("sub") == case.subject):
            failures.append(f"{case.what}: should verify, got {got.get('error') or got}")
        elif not case.accept and got["ok"]:
            failures.append(f"{case.what}: should be rejected but verified")
        elif not case.accept and not re.search(case.reason or "", got.get("error", ""), re.IGNORECASE):
            failures.append(f"{case.what}: rejected for another reason: {got.get('error')}")
    return failures


def _reverse_failures(world: World, exchange: Exchange, alg: str, library: str) -> list[str]:
    request = next(r for r in world.sign_requests if r.alg == alg)
    got = exchange.signed[request.id].get(library)
    if got is None or "token" not in got:
        return [f"the library did not sign: {got}"]
    token = got["token"]
    header = _header(token)
    failures = [
        f"header {name} is {header.get(name)!r}, expected {want!r}"
        for name, want in (("alg", alg), ("kid", request.kid), ("typ", TYP))
        if header.get(name) != want
    ]
    stores = {
        "TrustStore.from_jwks": TrustStore.from_jwks(
            (world.before / issuer_jwks_key(issuer_ref(alg))).read_text(),
            issuer=issuer_url(alg),
            audiences=(AUDIENCE,),
            typ=TYP,
            required_claims=("sub", "jti"),
        ),
        "TrustStore.from_directory": TrustStore.from_directory(world.before),
    }
    for name, store in stores.items():
        try:
            claims = store.verify(token)
        except Exception as exc:  # report every rejection as a cell failure
            failures.append(f"{name} rejected it: {type(exc).__name__}: {exc}")
            continue
        if (claims.get("sub"), claims.get("jti")) != (request.sub, request.jti):
            failures.append(f"{name} returned other claims: {claims}")
    return failures


def _check_unsupported(
    direction: str, alg: str, library: str, failures: list[str], matrix: MatrixRecorder
) -> None:
    reason = UNSUPPORTED[(library, alg)]
    matrix.record(direction, alg, library, f"n/a: {reason}")
    # Not a silent skip: if the library starts supporting the algorithm, this fails and the table
    # above must be updated.
    assert failures, f"{library} is listed as not supporting {alg}, but every case passed"


@pytest.mark.parametrize("library", LIBRARIES)
@pytest.mark.parametrize("alg", ALGORITHMS)
def test_library_verifies_our_tokens_with_the_projected_jwks_and_rejects_the_bad_ones(
    alg: str, library: str, world: World, exchange: Exchange, matrix: MatrixRecorder
) -> None:
    failures = _forward_failures(world, exchange, alg, library)
    if (library, alg) in UNSUPPORTED:
        _check_unsupported(FORWARD, alg, library, failures, matrix)
        return
    matrix.record(FORWARD, alg, library, "ok" if not failures else "FAIL: " + "; ".join(failures))
    assert not failures


@pytest.mark.parametrize("library", LIBRARIES)
@pytest.mark.parametrize("alg", ALGORITHMS)
def test_our_verifier_accepts_tokens_the_library_signs_with_our_keys(
    alg: str, library: str, world: World, exchange: Exchange, matrix: MatrixRecorder
) -> None:
    failures = _reverse_failures(world, exchange, alg, library)
    if (library, alg) in UNSUPPORTED:
        _check_unsupported(REVERSE, alg, library, failures, matrix)
        return
    matrix.record(REVERSE, alg, library, "ok" if not failures else "FAIL: " + "; ".join(failures))
    assert not failures


def test_every_negative_case_is_rejected_by_our_own_verifier_too(world: World) -> None:
    """The cases are only meaningful if our verifier agrees with what they expect of the others."""
    stores = {directory: TrustStore.from_directory(directory) for directory in (world.before, world.after)}
    for case in world.cases:
        store = stores[world.after if Path(case.jwks).parent == world.after else world.before]
        if case.accept:
            assert store.verify(case.token, issuer=issuer_url(case.alg))["sub"] == case.subject
        else:
            with pytest.raises(InvalidToken):
                store.verify(case.token, issuer=issuer_url(case.alg))


def test_private_keys_never_appear_in_the_exchange_output(world: World, exchange: Exchange) -> None:
    everything = json.dumps([exchange.verified, exchange.signed, exchange.notes])
    for request in world.sign_requests:
        body = b"".join(Path(request.key).read_bytes().splitlines()[1:-1]).decode()
        assert body[:40] not in everything
