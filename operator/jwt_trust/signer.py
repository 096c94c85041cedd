"""Mints tokens with the active key of a mounted signing-key Secret.

The operator writes the Secret ``<issuer>-signing-keys`` (format in docs/architecture.md). A signer that
mounts it must switch keys on time even when its copy of the Secret is stale, so the choice of key is
made from the timestamps in ``keys.json`` at minting time (``rotation.signing_key``), never from a
"current key" pointer. ``exp - iat`` is capped at the issuer's maximum token lifetime, which is what
lets the operator remove a retired key once every token it signed has expired.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import _mounted
from .algorithms import ALGORITHMS
from .errors import NoActiveKey, SigningError
from .keys import PrivateKey, b64url_encode, private_key_from_pem, private_key_to_pem
from .rotation import KeyRecord, signing_key

KEYS_FILE = "keys.json"
# A Secret, like a ConfigMap, holds at most 1 MiB.
MAX_SECRET_BYTES = 1024 * 1024


@dataclass(frozen=True)
class SigningKeys:
    """The parsed content of a signing-key Secret."""

    issuer: str
    max_token_lifetime: int
    records: tuple[KeyRecord, ...]
    private_keys: Mapping[str, PrivateKey]

    @classmethod
    def from_secret_data(cls, data: Mapping[str, bytes]) -> SigningKeys:
        try:
            document = json.loads(data[KEYS_FILE])
            records = tuple(KeyRecord.from_json(item) for item in document["keys"])
            issuer = str(document["issuer"])
            lifetime = int(document["maxTokenLifetimeSeconds"])
        except (KeyError, TypeError, ValueError) as error:
            raise SigningError(f"keys.json is missing or malformed: {error!r}") from None
        private_keys = {
            record.kid: private_key_from_pem(data[f"{record.kid}.pem"])
            for record in records
            if f"{record.kid}.pem" in data
        }
        return cls(issuer=issuer, max_token_lifetime=lifetime, records=records, private_keys=private_keys)


def render_secret_data(
    *,
    issuer: str,
    max_token_lifetime: int,
    records: tuple[KeyRecord, ...],
    private_keys: Mapping[str, PrivateKey],
) -> dict[str, bytes]:
    """The inverse of ``SigningKeys.from_secret_data``: what the operator and ``keygen`` write."""
    document = {
        "version": 1,
        "issuer": issuer,
        "maxTokenLifetimeSeconds": max_token_lifetime,
        "keys": [record.to_json() for record in records],
    }
    data = {KEYS_FILE: json.dumps(document, indent=2, sort_keys=True).encode()}
    for record in records:
        if record.kid in private_keys:
            data[f"{record.kid}.pem"] = private_key_to_pem(private_keys[record.kid])
    return data


def _load(directory: Path) -> tuple[_mounted.Version, SigningKeys]:
    try:
        current, files = _mounted.read(directory, KEYS_FILE, max_bytes=MAX_SECRET_BYTES)
    except OSError as error:
        raise SigningError(f"cannot read signing-key directory {directory}: {error.strerror}") from None
    except ValueError as error:
        raise SigningError(str(error)) from None
    return current, SigningKeys.from_secret_data(files)


class Signer:
    """Signs JWTs with the key that is active now.

    ``Signer.from_directory`` re-reads the directory when the kubelet swaps its ``..data`` link (checked at
    most once per ``reload_interval`` seconds), so a long-running signer follows rotations.
    """

    def __init__(
        self,
        keys: SigningKeys,
        *,
        directory: Path | None = None,
        version: _mounted.Version | None = None,
        reload_interval: float = 1.0,
    ):
        self._keys = keys
        self._directory = directory
        self._version = version
        self._reload_interval = reload_interval
        self._checked_at = time.monotonic()

    @classmethod
    def from_directory(cls, path: str | os.PathLike[str], *, reload_interval: float = 1.0) -> Signer:
        directory = Path(path)
        version, keys = _load(directory)
        return cls(keys, directory=directory, version=version, reload_interval=reload_interval)

    @classmethod
    def from_secret_data(cls, data: Mapping[str, bytes]) -> Signer:
        return cls(SigningKeys.from_secret_data(data))

    @property
    def issuer(self) -> str:
        return self._keys.issuer

    def _maybe_reload(self) -> None:
        if self._directory is None or time.monotonic() - self._checked_at < self._reload_interval:
            return
        self._checked_at = time.monotonic()
        try:
            if _mounted.version(self._directory, KEYS_FILE) == self._version:
                return
            self._version, self._keys = _load(self._directory)
        except (OSError, SigningError):
            pass  # a half-written or malformed copy: keep signing with the last good one

    def active_key(self, now: int | None = None) -> KeyRecord:
        self._maybe_reload()
        moment = int(time.time()) if now is None else now
        usable = [record for record in self._keys.records if record.kid in self._keys.private_keys]
        record = signing_key(usable, moment)
        if record is None:
            raise NoActiveKey(f"no key of issuer {self._keys.issuer!r} is active now")
        return record

    def mint(
        self,
        claims: Mapping[str, Any] | None = None,
        *,
        subject: str | None = None,
        audience: str | list[str] | None = None,
        lifetime: int | None = None,
        typ: str = "JWT",
        now: int | None = None,
    ) -> str:
        """Returns a compact JWS. ``iss``, ``iat``, ``nbf``, ``exp`` and ``jti`` are set here; ``exp - iat``
        never exceeds the issuer's maximum token lifetime."""
        moment = int(time.time()) if now is None else now
        record = self.active_key(moment)
        maximum = self._keys.max_token_lifetime
        if lifetime is not None and lifetime <= 0:
            raise SigningError("lifetime must be positive")
        duration = maximum if lifetime is None else min(lifetime, maximum)
        payload: dict[str, Any] = dict(claims or {})
        if subject is not None:
            payload["sub"] = subject
        if audience is not None:
            payload["aud"] = audience
        payload.setdefault("jti", secrets.token_urlsafe(16))
        payload.update(iss=self._keys.issuer, iat=moment, nbf=moment, exp=moment + duration)
        header = {"alg": record.alg, "kid": record.kid, "typ": typ}
        signing_input = (
            b64url_encode(json.dumps(header, separators=(",", ":")).encode())
            + "."
            + b64url_encode(json.dumps(payload, separators=(",", ":")).encode())
        )
        signature = ALGORITHMS[record.alg].sign(self._keys.private_keys[record.kid], signing_input.encode())
        return signing_input + "." + b64url_encode(signature)
