"""The signer and the `jwt-trust` CLI, called in-process through ``main(argv)``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jwt_trust import errors
from jwt_trust.cli import main
from jwt_trust.keys import b64url_decode, generate_private_key, public_jwk
from jwt_trust.rotation import KeyRecord
from jwt_trust.signer import Signer, render_secret_data
from jwt_trust.verifier import TrustStore

ISSUER = "https://issuer.test"
NOW = 1_800_000_000


def _secret(records_and_keys: list[tuple[KeyRecord, object]], lifetime: int = 600) -> dict[str, bytes]:
    return render_secret_data(
        issuer=ISSUER,
        max_token_lifetime=lifetime,
        records=tuple(record for record, _ in records_and_keys),
        private_keys={record.kid: key for record, key in records_and_keys},  # type: ignore[misc]
    )


def _key(
    alg: str, activates_at: int | None, retires_at: int | None = None
) -> tuple[KeyRecord, object, dict[str, str]]:
    key = generate_private_key(alg, rsa_bits=2048)
    jwk = public_jwk(key, alg)
    record = KeyRecord(
        kid=jwk["kid"],
        alg=alg,
        created_at=NOW - 10_000,
        published_at=NOW - 9_000,
        activates_at=activates_at,
        retires_at=retires_at,
    )
    return record, key, jwk


def test_signer_uses_the_newest_key_that_is_active_now_not_the_next_one() -> None:
    old, old_key, old_jwk = _key("ES256", NOW - 5_000, retires_at=NOW - 100)
    active, active_key, active_jwk = _key("EdDSA", NOW - 100)
    upcoming, upcoming_key, _ = _key("ES256", NOW + 100)
    signer = Signer.from_secret_data(
        _secret([(old, old_key), (active, active_key), (upcoming, upcoming_key)])
    )
    token = signer.mint(subject="alice", now=NOW)
    store = TrustStore.from_jwks({"keys": [old_jwk, active_jwk]}, issuer=ISSUER)
    header = json.loads(b64url_decode(token.split(".")[0]))
    assert header["kid"] == active.kid
    assert store.verify(token, now=NOW)["sub"] == "alice"
    assert signer.active_key(NOW + 100).kid == upcoming.kid


def test_signer_caps_the_lifetime_at_the_issuers_maximum() -> None:
    record, key, jwk = _key("ES256", NOW - 1)
    signer = Signer.from_secret_data(_secret([(record, key)], lifetime=600))
    store = TrustStore.from_jwks({"keys": [jwk]}, issuer=ISSUER)
    claims = store.verify(signer.mint(lifetime=86_400, now=NOW), now=NOW)
    assert claims["exp"] - claims["iat"] == 600
    assert claims["iss"] == ISSUER
    assert isinstance(claims["jti"], str)


def test_signer_refuses_to_mint_when_no_key_is_active() -> None:
    record, key, _ = _key("ES256", NOW + 60)
    signer = Signer.from_secret_data(_secret([(record, key)]))
    with pytest.raises(errors.NoActiveKey):
        signer.mint(now=NOW)


def test_signer_follows_a_kubelet_style_swap_of_its_directory(tmp_path: Path) -> None:
    first, first_key, _ = _key("ES256", NOW - 10)
    second, second_key, _ = _key("ES256", NOW - 5)

    def publish(version: str, data: dict[str, bytes]) -> None:
        target = tmp_path / version
        target.mkdir()
        for name, content in data.items():
            (target / name).write_bytes(content)
            link = tmp_path / name
            if not link.is_symlink():
                link.symlink_to(Path("..data") / name)
        staging = tmp_path / "..data_tmp"
        staging.symlink_to(version)
        os.replace(staging, tmp_path / "..data")

    publish("v1", _secret([(first, first_key)]))
    signer = Signer.from_directory(tmp_path, reload_interval=0)
    assert signer.active_key(NOW).kid == first.kid
    publish("v2", _secret([(first, first_key), (second, second_key)]))
    assert signer.active_key(NOW).kid == second.kid


def test_cli_keygen_mint_and_verify_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keys, jwks = tmp_path / "keys", tmp_path / "jwks.json"
    assert (
        main(["keygen", "--alg", "Ed25519", "--issuer", ISSUER, "--out", str(keys), "--jwks-out", str(jwks)])
        == 0
    )
    assert "d" not in json.loads(jwks.read_text())["keys"][0]
    assert main(["mint", "--key-dir", str(keys), "--subject", "bob", "--audience", "api://x"]) == 0
    token = capsys.readouterr().out.strip()
    assert main(["verify", token, "--jwks", str(jwks), "--issuer", ISSUER, "--audience", "api://x"]) == 0
    assert json.loads(capsys.readouterr().out)["sub"] == "bob"


def test_cli_verify_exits_1_with_the_reason_when_rejected(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys, jwks = tmp_path / "keys", tmp_path / "jwks.json"
    main(["keygen", "--issuer", ISSUER, "--out", str(keys), "--jwks-out", str(jwks)])
    main(["mint", "--key-dir", str(keys), "--audience", "api://x"])
    token = capsys.readouterr().out.strip()
    assert main(["verify", token, "--jwks", str(jwks), "--audience", "api://other"]) == 1
    assert capsys.readouterr().err.startswith("rejected: InvalidAudience:")
    assert (
        main(
            [
                "verify",
                token,
                "--jwks",
                str(jwks),
                "--audience",
                "api://x",
                # One argument with "=": a kid is base64url and may begin with "-", which argparse
                # would take for an option (1 key in 64 here).
                "--revoked-kid=" + json.loads(jwks.read_text())["keys"][0]["kid"],
            ]
        )
        == 1
    )
    assert "RevokedKey" in capsys.readouterr().err


def test_cli_usage_errors_exit_2(tmp_path: Path) -> None:
    assert main(["verify", "x.y.z"]) == 2  # neither --trust-dir nor --jwks
    assert main(["verify", "x.y.z", "--jwks", str(tmp_path / "missing.json")]) == 2
    assert main(["keygen", "--alg", "HS256", "--issuer", ISSUER, "--out", str(tmp_path)]) == 2


# --- authentication-config -------------------------------------------------------------------------

SERVED_ISSUER = {
    "apiVersion": "jwt-trust.dev/v1alpha1",
    "kind": "Issuer",
    "metadata": {"name": "auth", "namespace": "idp"},
    "spec": {"issuer": "https://auth.example"},
    "status": {
        "discovery": {
            "discoveryURL": "https://discovery.example:8443/issuers/idp/auth/.well-known/openid-configuration",
            "jwksURL": "https://discovery.example:8443/issuers/idp/auth/jwks",
        }
    },
}


def test_authentication_config_prints_a_jwt_authenticator_the_api_server_reads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import yaml

    (tmp_path / "issuer.json").write_text(json.dumps(SERVED_ISSUER))
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    argv = ["authentication-config", str(tmp_path / "issuer.json"), "--audience", "kubernetes"]
    assert main([*argv, "--ca-file", str(tmp_path / "ca.pem")]) == 0
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["apiVersion"] == "apiserver.config.k8s.io/v1"
    assert config["kind"] == "AuthenticationConfiguration"
    (authenticator,) = config["jwt"]
    assert authenticator["issuer"] == {
        "url": "https://auth.example",
        "discoveryURL": SERVED_ISSUER["status"]["discovery"]["discoveryURL"],
        "audiences": ["kubernetes"],
        "certificateAuthority": (tmp_path / "ca.pem").read_text(),
    }
    assert authenticator["claimMappings"] == {"username": {"claim": "sub", "prefix": "jwt-trust:idp/auth:"}}


def test_authentication_config_refuses_an_issuer_the_discovery_service_does_not_serve(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    unserved = {**SERVED_ISSUER, "status": {}}
    (tmp_path / "issuer.json").write_text(json.dumps(unserved))
    assert main(["authentication-config", str(tmp_path / "issuer.json"), "--audience", "k"]) == 2
    assert "not served by the discovery service" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text("{")
    assert main(["authentication-config", str(tmp_path / "bad.json"), "--audience", "k"]) == 2
    assert "not JSON" in capsys.readouterr().err


SCALARS = st.one_of(
    st.text(max_size=20),
    st.booleans(),
    st.integers(-5, 5),
    st.sampled_from(["a: b", "x:", "#c", "true", "- y", "1"]),
)


@settings(max_examples=300, deadline=None)
@given(
    st.recursive(
        SCALARS,
        lambda children: (
            st.lists(children, min_size=1, max_size=3)
            | st.dictionaries(
                st.from_regex(r"[a-zA-Z][a-zA-Z0-9]{0,8}", fullmatch=True), children, min_size=1, max_size=3
            )
        ),
        max_leaves=12,
    ).filter(lambda v: isinstance(v, dict))
)
def test_the_yaml_it_prints_reads_back_as_the_same_data(value: dict[str, object]) -> None:
    import yaml

    from jwt_trust.authentication_config import to_yaml

    assert yaml.safe_load(to_yaml(value)) == value
