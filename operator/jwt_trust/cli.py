"""The ``jwt-trust`` command line.

``verify``'s interface is a public contract that scripts depend on: exit 0 and the claims (or, with
``--signature-only``, the payload) as JSON on stdout when the token is valid; exit 1 and one line
``rejected: <ErrorType>: <reason>`` on stderr when it is not; exit 2 on usage errors. Exit codes are
decided in ``main`` only.
"""

from __future__ import annotations

import argparse
import base64
import importlib
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import authentication_config, projection
from .algorithms import ALGORITHMS, normalise_algorithm
from .errors import InvalidToken, JWTTrustError
from .keys import generate_private_key, public_jwk
from .rotation import KeyRecord
from .signer import Signer, render_secret_data
from .verifier import TrustStore

EXIT_OK, EXIT_REJECTED, EXIT_USAGE = 0, 1, 2
DEFAULT_ALGORITHMS = ",".join(projection.DEFAULT_ALGORITHMS)


class UsageError(Exception):
    """A mistake in the command line or its files: exit 2."""


def main_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jwt-trust", description="Offline JWT trust: verify, mint, inspect."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    verify = commands.add_parser("verify", help="verify a token offline (exit 0 valid, 1 rejected, 2 usage)")
    verify.add_argument("token", help="the compact JWS, or - to read it from standard input")
    source = verify.add_mutually_exclusive_group(required=True)
    source.add_argument("--trust-dir", type=Path, help="a projected ConfigMap directory (trust.json + JWKS)")
    source.add_argument("--jwks", type=Path, help="a JWK Set file")
    verify.add_argument("--issuer", help="the expected iss")
    verify.add_argument("--audience", help="the audience this verifier accepts")
    verify.add_argument(
        "--algorithms", help=f"comma-separated allow-list (default with --jwks: {DEFAULT_ALGORITHMS})"
    )
    verify.add_argument("--leeway", type=float, help="clock leeway in seconds (default 60)")
    verify.add_argument("--now", type=float, help="verify as of this Unix time")
    verify.add_argument("--typ", help="required header typ (at+jwt matches application/at+jwt)")
    verify.add_argument("--require", action="append", default=[], metavar="CLAIM", help="a required claim")
    verify.add_argument("--revoked-kid", action="append", default=[], metavar="KID")
    verify.add_argument("--revoked-jti", action="append", default=[], metavar="JTI")
    verify.add_argument("--max-token-bytes", type=int, default=65536)
    verify.add_argument(
        "--signature-only", action="store_true", help="check the signature only, print the payload"
    )

    mint = commands.add_parser("mint", help="sign a token with the active key of a signing-key directory")
    mint.add_argument("--key-dir", type=Path, required=True, help="a mounted <issuer>-signing-keys Secret")
    mint.add_argument("--subject")
    mint.add_argument("--audience")
    mint.add_argument("--lifetime", type=int, help="seconds (capped at the issuer's maximum)")
    mint.add_argument("--claims", default="{}", help="extra claims as a JSON object")
    mint.add_argument("--typ", default="JWT")

    inspect = commands.add_parser("inspect", help="decode a token WITHOUT verifying it")
    inspect.add_argument("token", help="the token, or - for standard input")

    keygen = commands.add_parser(
        "keygen", help="write a signing-key directory and its public JWKS (for trying out)"
    )
    keygen.add_argument(
        "--alg", default="ES256", help=f"EdDSA (or Ed25519), {', '.join(projection.DEFAULT_ALGORITHMS[1:])}"
    )
    keygen.add_argument("--rsa-bits", type=int, default=3072)
    keygen.add_argument("--issuer", required=True)
    keygen.add_argument("--max-token-lifetime", type=int, default=3600)
    keygen.add_argument("--out", type=Path, required=True, help="directory for keys.json + <kid>.pem")
    keygen.add_argument("--jwks-out", type=Path, help="where to write the public JWKS (default: stdout)")

    authn = commands.add_parser(
        "authentication-config",
        help="print a kube-apiserver AuthenticationConfiguration for an Issuer the discovery service serves",
    )
    authn.add_argument("issuer", help="the Issuer as JSON (kubectl get issuer NAME -o json), or - for stdin")
    authn.add_argument("--audience", action="append", required=True, help="an accepted audience (repeatable)")
    authn.add_argument(
        "--ca-file", type=Path, help="PEM of the CA that signed the discovery service's certificate"
    )
    authn.add_argument("--username-claim", default="sub")
    authn.add_argument("--username-prefix", help="default: jwt-trust:<namespace>/<name>:")
    commands.add_parser(
        "discovery",
        add_help=False,
        help="serve Issuers' JWKS and OpenID metadata over HTTPS (needs the operator extra; "
        "jwt-trust discovery --help)",
    )

    return parser


def _discovery(argv: Sequence[str]) -> int:
    # Imported here, never at the top: the discovery service is part of the operator (aiohttp, kopf,
    # kubernetes_asyncio), which the offline library and this command line do not depend on.
    try:
        service = importlib.import_module("jwt_trust.kube.discovery")
    except ImportError as error:
        print(
            f"error: jwt-trust discovery needs the operator extra: pip install jwt-trust[operator] ({error})",
            file=sys.stderr,
        )
        return EXIT_USAGE
    code: int = service.main(list(argv))
    return code


def _read_token(argument: str) -> str:
    return sys.stdin.read().strip() if argument == "-" else argument


def _store(args: argparse.Namespace) -> TrustStore:
    if args.trust_dir is not None:
        return TrustStore.from_directory(args.trust_dir)
    try:
        jwks = args.jwks.read_bytes()
    except OSError as error:
        raise UsageError(f"cannot read {args.jwks}: {error.strerror}") from None
    algorithms = tuple((args.algorithms or DEFAULT_ALGORITHMS).split(","))
    return TrustStore.from_jwks(
        jwks,
        issuer=args.issuer,
        algorithms=algorithms,
        typ=args.typ,
        revoked_kids=tuple(args.revoked_kid),
        revoked_jtis=tuple(args.revoked_jti),
    )


def _verify(args: argparse.Namespace) -> int:
    if args.trust_dir is not None and (args.revoked_kid or args.revoked_jti or args.algorithms):
        raise UsageError(
            "--revoked-kid, --revoked-jti and --algorithms come from trust.json with --trust-dir"
        )
    store = _store(args)
    token = _read_token(args.token)
    if args.signature_only:
        _header, payload = store.verify_signature(token, max_token_bytes=args.max_token_bytes)
        sys.stdout.buffer.write(payload + b"\n")
        return EXIT_OK
    claims = store.verify(
        token,
        audience=args.audience,
        issuer=args.issuer,
        now=args.now,
        leeway=args.leeway,
        typ=args.typ,
        require=args.require,
        max_token_bytes=args.max_token_bytes,
    )
    print(json.dumps(claims, indent=2, sort_keys=True))
    return EXIT_OK


def _mint(args: argparse.Namespace) -> int:
    try:
        claims = json.loads(args.claims)
    except ValueError:
        raise UsageError("--claims must be a JSON object") from None
    if not isinstance(claims, dict):
        raise UsageError("--claims must be a JSON object")
    signer = Signer.from_directory(args.key_dir)
    print(
        signer.mint(
            claims, subject=args.subject, audience=args.audience, lifetime=args.lifetime, typ=args.typ
        )
    )
    return EXIT_OK


def _decode_segment(segment: str) -> Any:
    raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    return json.loads(raw)


def _inspect(args: argparse.Namespace) -> int:
    parts = _read_token(args.token).split(".")
    if len(parts) != 3:
        raise UsageError("not a compact JWS (expected three dot-separated parts)")
    try:
        header, claims = _decode_segment(parts[0]), _decode_segment(parts[1])
    except ValueError:
        raise UsageError("the header or payload is not base64url JSON") from None
    print("# UNVERIFIED: decoded without checking the signature or any claim", file=sys.stderr)
    print(json.dumps({"header": header, "claims": claims}, indent=2, sort_keys=True))
    return EXIT_OK


def _keygen(args: argparse.Namespace) -> int:
    try:
        alg = normalise_algorithm(args.alg)
    except ValueError:
        raise UsageError(
            f"unknown algorithm {args.alg!r}; choose from {', '.join(sorted(ALGORITHMS))}"
        ) from None
    key = generate_private_key(alg, rsa_bits=args.rsa_bits)
    jwk = public_jwk(key, alg)
    now = int(time.time())
    # A standalone key is published and active at once: there are no verifiers with stale copies yet.
    record = KeyRecord(kid=jwk["kid"], alg=alg, created_at=now, published_at=now, activates_at=now)
    data = render_secret_data(
        issuer=args.issuer,
        max_token_lifetime=args.max_token_lifetime,
        records=(record,),
        private_keys={record.kid: key},
    )
    args.out.mkdir(parents=True, exist_ok=True)
    for name, content in data.items():
        target = args.out / name
        target.write_bytes(content)
        if name.endswith(".pem"):
            target.chmod(0o600)
    jwks = json.dumps({"keys": [jwk]}, indent=2)
    if args.jwks_out is not None:
        args.jwks_out.write_text(jwks + "\n")
    else:
        print(jwks)
    return EXIT_OK


def _authentication_config(args: argparse.Namespace) -> int:
    try:
        text = sys.stdin.read() if args.issuer == "-" else Path(args.issuer).read_text()
        issuer = json.loads(text)
        ca = args.ca_file.read_text() if args.ca_file is not None else None
    except OSError as error:
        raise UsageError(f"cannot read {error.filename}: {error.strerror}") from None
    except ValueError as error:
        raise UsageError(f"the Issuer is not JSON: {error}") from None
    try:
        authenticator = authentication_config.jwt_authenticator(
            issuer,
            audiences=args.audience,
            certificate_authority=ca,
            username_claim=args.username_claim,
            username_prefix=args.username_prefix,
        )
    except authentication_config.NotServed as error:
        raise UsageError(str(error)) from None
    print(authentication_config.to_yaml(authentication_config.authentication_configuration([authenticator])))
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["discovery"]:
        return _discovery(arguments[1:])  # its own flags, parsed by the service
    parser = main_parser()
    try:
        args = parser.parse_args(arguments)
    except SystemExit as exit_:
        return EXIT_USAGE if exit_.code else EXIT_OK
    handlers = {
        "verify": _verify,
        "mint": _mint,
        "inspect": _inspect,
        "keygen": _keygen,
        "authentication-config": _authentication_config,
    }
    try:
        return handlers[args.command](args)
    except InvalidToken as error:
        print(f"rejected: {type(error).__name__}: {error}", file=sys.stderr)
        return EXIT_REJECTED
    except (UsageError, JWTTrustError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE


def entrypoint() -> None:
    sys.exit(main())
