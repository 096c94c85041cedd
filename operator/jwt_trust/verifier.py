"""Strict offline JWT verification against a trust store (docs/architecture.md, "Verification").

A :class:`TrustStore` holds the public keys of one or more issuers, each key bound to the issuer that
owns it, plus the policy (audiences, algorithm allow-list, ``typ``, required claims, leeway, revoked
kids and jtis). :meth:`TrustStore.verify` accepts only compact JWS tokens that pass every rule and
returns their claims; every rejection is a distinct subclass of :class:`~jwt_trust.errors.InvalidToken`
whose message never contains the token or any key.

Keys are bound to their issuer: a revoked kid is revoked for its own issuer only, and a kid that names
two different keys in one issuer's set is ambiguous: neither key is used, and a token naming that kid is
refused with :class:`~jwt_trust.errors.AmbiguousKey`. A kid shared by two issuers is legal (each key
verifies only its own issuer's tokens). Keys that cannot be used (refused as invalid or weak) and
ambiguous kids are listed in :attr:`TrustStore.warnings`.

Speed: public keys are parsed once at load, each bound to a ready signature check per algorithm it
fits, and a header segment is checked once per loaded trust (tokens of one key share it), so a fresh
token costs one split, two base64url decodings, one JSON parse of the claims, the claim rules and the
signature check. That per-token work is in :mod:`jwt_trust._hotpath` (two calls per token, to a C
twin when it is built); this module keeps the policy around it. A bounded cache of already-verified
tokens skips the signature check and JSON parsing for a repeated token, but the time, audience,
``typ``, required-claim and revocation rules are still applied to it on every call; any reload
invalidates both caches.

A store built with :meth:`TrustStore.from_directory` follows a mounted ConfigMap: it notices the
kubelet's atomic ``..data`` symlink swap, reloads, and keeps the last good copy if the new one is
malformed (the error is kept in :attr:`TrustStore.last_error`).
"""

from __future__ import annotations

import functools
import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from jwt_trust import _hotpath, _mounted
from jwt_trust.algorithms import ALGORITHMS
from jwt_trust.errors import (
    AmbiguousKey,
    DisallowedAlgorithm,
    InvalidIssuer,
    InvalidKey,
    InvalidType,
    MalformedToken,
    RevokedKey,
    RevokedToken,
    TokenTooLarge,
    TrustStoreError,
    UnknownKey,
    UnsupportedToken,
)
from jwt_trust.keys import ambiguous_kids, public_key_from_jwk
from jwt_trust.projection import (
    DEFAULT_ALGORITHMS,
    MAX_CONFIGMAP_BYTES,
    TRUST_FILE,
    IssuerTrust,
    PolicyTrust,
    parse_trust_files,
)

DEFAULT_MAX_TOKEN_BYTES = 65536
CACHE_SIZE = 4096


def _media_type(typ: str) -> str:
    typ = typ.lower()
    return typ if "/" in typ else "application/" + typ


# --- the loaded state ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Issuer:
    ref: str
    issuer: str | None
    revoked_kids: frozenset[str]
    revoked_jtis: frozenset[str]


Check = Callable[[bytes, bytes], bool]


@dataclass(frozen=True)
class _Key:
    kid: str | None
    public_key: Any
    algs: frozenset[str]  # header algs this key may verify: its own alg, or every alg its type fits
    owner: _Issuer
    checks: Mapping[str, Check]  # alg -> signature check bound to this key (Algorithm.verifier)


class _Header(NamedTuple):
    """A header segment that passed every header rule, with the keys (and their checks) it selects."""

    header: dict[str, Any]
    candidates: tuple[tuple[_Key, Check], ...]


@dataclass(frozen=True)
class _State:
    generation: int
    by_kid: dict[str, tuple[_Key, ...]]
    by_alg: dict[str, tuple[_Key, ...]]
    ambiguous_kids: frozenset[str]  # kids that name two different keys of one issuer (none is loaded)
    any_revoked: bool  # whether any issuer revokes a kid (each key checks its own issuer's list)
    algorithms: frozenset[str]
    audiences: tuple[str, ...]
    typ: str | None  # normalised media type
    required_claims: tuple[str, ...]
    leeway: float
    warnings: tuple[str, ...]  # keys that were not loaded, and why
    # Header segment -> its checked header. Tokens of one key share one header segment, so this
    # turns per-token header work into a dict lookup. Bounded; it lives and dies with the state, so a
    # reload can never serve a key selection made under the old trust.
    headers: dict[bytes, _Header] = field(default_factory=dict, compare=False)


_generations = iter(range(1, 2**63))
_generation_lock = threading.Lock()


def _next_generation() -> int:
    with _generation_lock:
        return next(_generations)


def _load_key(jwk: Any, owner: _Issuer) -> _Key | str | None:
    """Parse one JWK; None for a key not meant for verification, a reason for a key we refuse."""
    if not isinstance(jwk, dict):
        return None
    if jwk.get("use", "sig") != "sig":
        return None
    key_ops = jwk.get("key_ops")
    if key_ops is not None and (not isinstance(key_ops, list) or "verify" not in key_ops):
        return None
    key_alg = jwk.get("alg")
    if key_alg is not None and (not isinstance(key_alg, str) or key_alg not in ALGORITHMS):
        return None
    kid = jwk.get("kid")
    if kid is not None and not isinstance(kid, str):
        return None
    try:
        public_key = public_key_from_jwk(jwk)
    except InvalidKey as error:
        return str(error)  # messages of InvalidKey never carry key material
    except (ValueError, TypeError, KeyError):
        return "not a usable public key"
    checks = {}
    for name, algorithm in ALGORITHMS.items():
        check = algorithm.verifier(public_key) if key_alg is None or key_alg == name else None
        if check is not None:
            checks[name] = check
    if not checks:
        return f"the key does not fit algorithm {key_alg}" if key_alg else "the key fits no algorithm"
    return _Key(kid=kid, public_key=public_key, algs=frozenset(checks), owner=owner, checks=checks)


def _issuer_keys(owner: _Issuer, jwks: Iterable[Any], warnings: list[str]) -> tuple[list[_Key], set[str]]:
    """The usable keys of one issuer and the kids it made ambiguous (whose keys are left out)."""
    loaded: list[_Key] = []
    for index, jwk in enumerate(jwks):
        key = _load_key(jwk, owner)
        if isinstance(key, str):
            kid = jwk.get("kid") if isinstance(jwk, dict) else None
            named = f"kid {kid[:64]!r}" if isinstance(kid, str) else f"key #{index}"
            warnings.append(f"issuer {owner.ref}: {named} refused: {key}")
        elif key is not None:
            loaded.append(key)
    ambiguous = ambiguous_kids((key.kid, key.public_key) for key in loaded)
    for kid, count in sorted(ambiguous.items()):
        warnings.append(
            f"issuer {owner.ref}: kid {kid[:64]!r} names {count} different keys; none of them is used"
        )
    return [key for key in loaded if key.kid not in ambiguous], set(ambiguous)


def _build_state(
    issuers: Iterable[tuple[_Issuer, Iterable[Any]]],
    *,
    audiences: Iterable[str],
    algorithms: Iterable[str],
    typ: str | None,
    required_claims: Iterable[str],
    leeway_seconds: float,
) -> _State:
    by_kid: dict[str, list[_Key]] = {}
    by_alg: dict[str, list[_Key]] = {}
    ambiguous: set[str] = set()
    any_revoked = False
    warnings: list[str] = []
    for owner, jwks in issuers:
        any_revoked = any_revoked or bool(owner.revoked_kids)
        # Ambiguity is decided per issuer: a kid shared by two issuers is legal, since each key only
        # verifies tokens whose iss is its own issuer's.
        keys, unusable = _issuer_keys(owner, jwks, warnings)
        ambiguous |= unusable
        for key in keys:
            if key.kid is not None:
                by_kid.setdefault(key.kid, []).append(key)
            for alg in key.algs:
                by_alg.setdefault(alg, []).append(key)
    allowed = frozenset(alg for alg in algorithms if alg in ALGORITHMS)
    return _State(
        generation=_next_generation(),
        by_kid={kid: tuple(keys) for kid, keys in by_kid.items()},
        by_alg={alg: tuple(keys) for alg, keys in by_alg.items()},
        ambiguous_kids=frozenset(ambiguous),
        any_revoked=any_revoked,
        algorithms=allowed,
        audiences=tuple(audiences),
        typ=_media_type(typ) if typ is not None else None,
        required_claims=tuple(required_claims),
        leeway=float(leeway_seconds),
        warnings=tuple(warnings),
    )


def _state_from_trust(trust: PolicyTrust) -> _State:
    return _build_state(
        ((_owner(issuer), issuer.keys) for issuer in trust.issuers),
        audiences=trust.audiences,
        algorithms=trust.algorithms,
        typ=trust.typ,
        required_claims=trust.required_claims,
        leeway_seconds=trust.leeway_seconds,
    )


def _owner(issuer: IssuerTrust) -> _Issuer:
    return _Issuer(
        ref=issuer.ref,
        issuer=issuer.issuer,
        revoked_kids=frozenset(issuer.revoked_kids),
        revoked_jtis=frozenset(jti for jti, _exp in issuer.revoked_jtis),
    )


class _Verified(NamedTuple):
    """What the cache remembers about a token whose signature and structure were already checked."""

    header: dict[str, Any]
    payload: bytes
    claims: dict[str, Any] | None  # None until a claims check parsed them (signature-only mode)
    candidates: tuple[_Key, ...]  # keys whose signature check passed (several only on a kid collision)


# The same object as _Verified(...), built in C: a NamedTuple's own constructor is Python code, and this
# is on every fresh token's path.
_new_verified: Callable[[tuple[Any, ...]], _Verified] = functools.partial(tuple.__new__, _Verified)


# --- the store -----------------------------------------------------------------------------------


class TrustStore:
    """Trusted issuer keys plus the verification policy; thread-safe for concurrent :meth:`verify`."""

    def __init__(self, state: _State, *, directory: Path | None = None, reload_interval: float = 1.0):
        self._state = state
        self._directory = directory
        self._reload_interval = reload_interval
        self._marker: tuple[object, ...] = ()
        self._last_check = time.monotonic()
        self._last_forced = float("-inf")
        self._reload_lock = threading.Lock()
        # Insertion-ordered: eviction drops the oldest entry (FIFO; recency is not worth tracking).
        self._cache: dict[tuple[bytes, int], _Verified] = {}
        self._cache_lock = threading.Lock()
        self.last_error: TrustStoreError | None = None

    # --- constructors ---

    @classmethod
    def from_trust(cls, trust: PolicyTrust) -> TrustStore:
        """A store for a parsed projected policy (every issuer must name its ``iss``)."""
        return cls(_state_from_trust(trust))

    @classmethod
    def from_jwks(
        cls,
        jwks: Mapping[str, Any] | str | bytes,
        *,
        issuer: str | None = None,
        audiences: Iterable[str] = (),
        algorithms: Iterable[str] = DEFAULT_ALGORITHMS,
        typ: str | None = None,
        required_claims: Iterable[str] = (),
        leeway_seconds: float = 60,
        revoked_kids: Iterable[str] = (),
        revoked_jtis: Iterable[str] = (),
    ) -> TrustStore:
        """A store for one issuer's JWK Set. ``issuer=None`` means ``iss`` is not tied to the keys."""
        if isinstance(jwks, str | bytes):
            try:
                jwks = json.loads(jwks)
            except (ValueError, RecursionError):
                raise TrustStoreError("the JWK Set is not valid JSON") from None
        if not isinstance(jwks, Mapping) or not isinstance(jwks.get("keys"), list):
            raise TrustStoreError("the JWK Set must be an object with a 'keys' list")
        owner = _Issuer(
            ref="jwks",
            issuer=issuer,
            revoked_kids=frozenset(revoked_kids),
            revoked_jtis=frozenset(revoked_jtis),
        )
        return cls(
            _build_state(
                [(owner, jwks["keys"])],
                audiences=audiences,
                algorithms=algorithms,
                typ=typ,
                required_claims=required_claims,
                leeway_seconds=leeway_seconds,
            )
        )

    @classmethod
    def from_directory(cls, path: str | os.PathLike[str], *, reload_interval: float = 1.0) -> TrustStore:
        """A store that follows a mounted projected ConfigMap directory (raises if it cannot load)."""
        directory = Path(path)
        marker, state = _read_directory(directory)
        store = cls(state, directory=directory, reload_interval=reload_interval)
        store._marker = marker
        return store

    # --- reloading ---

    @property
    def warnings(self) -> tuple[str, ...]:
        """Why keys of the loaded trust are not used: refused (invalid or weak) keys, ambiguous kids."""
        return self._state.warnings

    @property
    def generation(self) -> int:
        """Changes whenever the loaded trust changes (each successful reload)."""
        return self._state.generation

    def reload(self) -> bool:
        """Re-read the directory now; return True if a new copy was loaded. No-op for other stores."""
        if self._directory is None:
            return False
        with self._reload_lock:
            return self._reload_locked(force=True)

    def _reload_locked(self, *, force: bool) -> bool:
        assert self._directory is not None
        try:
            marker = _mounted.version(self._directory, TRUST_FILE)
        except OSError as exc:
            self.last_error = TrustStoreError(f"cannot read the trust directory: {exc.strerror}")
            return False
        if not force and marker == self._marker:
            return False
        try:
            marker, state = _read_directory(self._directory)
        except TrustStoreError as exc:
            # Keep the last good copy; remember the bad marker so it is not re-parsed every interval.
            self.last_error = exc
            self._marker = marker
            return False
        self._marker = marker
        self._state = state
        self.last_error = None
        with self._cache_lock:
            self._cache.clear()
        return True

    def _maybe_reload(self) -> None:
        now = time.monotonic()
        if now - self._last_check < self._reload_interval:
            return
        if self._reload_lock.acquire(blocking=False):
            try:
                self._last_check = now
                self._reload_locked(force=False)
            finally:
                self._reload_lock.release()

    def _reload_for_unknown_kid(self) -> bool:
        now = time.monotonic()
        if self._directory is None or now - self._last_forced < self._reload_interval:
            return False
        with self._reload_lock:
            if now - self._last_forced < self._reload_interval:
                return False
            self._last_forced = now
            before = self._state.generation
            self._reload_locked(force=True)
            return self._state.generation != before

    # --- verification ---

    def verify_signature(
        self, token: str | bytes, *, max_token_bytes: int = DEFAULT_MAX_TOKEN_BYTES
    ) -> tuple[dict[str, Any], bytes]:
        """Check structure, header rules, key selection and signature; return (header, payload bytes).

        No claim is checked (not even ``exp``) and the payload may be any bytes: for callers that apply
        their own claim policy.
        """
        verified, state = self._verified(token, max_token_bytes, claims=False)
        if state.typ is not None:
            _check_typ(verified.header, state.typ)
        return dict(verified.header), verified.payload

    def verify(
        self,
        token: str | bytes,
        *,
        audience: str | None = None,
        issuer: str | None = None,
        now: float | None = None,
        leeway: float | None = None,
        typ: str | None = None,
        require: Iterable[str] = (),
        max_token_bytes: int = DEFAULT_MAX_TOKEN_BYTES,
        use_cache: bool = True,
    ) -> dict[str, Any]:
        """Verify ``token`` and return its claims; raise an :class:`InvalidToken` subclass otherwise.

        ``audience``, ``typ`` and ``leeway`` replace the store's policy for this call; ``issuer``
        additionally requires that exact ``iss``; ``require`` adds required claims. ``use_cache=False``
        forces the full signature check even for a token verified before, and leaves the cache as it
        was (benchmarks, audits).
        """
        verified, state = self._verified(token, max_token_bytes, use_cache=use_cache)
        claims = verified.claims
        if claims is None:  # cached by verify_signature, which accepts any payload
            claims = _hotpath.parse_object(verified.payload, "payload")

        expected_typ = state.typ if typ is None else _media_type(typ)
        if expected_typ is not None:
            _check_typ(verified.header, expected_typ)

        if now is None:
            now = time.time()
        _hotpath.check_claims(
            claims,
            now,
            state.leeway if leeway is None else leeway,
            state.audiences if audience is None else (audience,),
            (*state.required_claims, *require) if require else state.required_claims,
        )

        iss = claims.get("iss")
        owner = None
        for key in verified.candidates:
            if key.owner.issuer is None or key.owner.issuer == iss:
                owner = key.owner
                break
        if owner is None:
            raise InvalidIssuer("iss is not the issuer that owns the verifying key")
        if issuer is not None and iss != issuer:
            raise InvalidIssuer("iss is not the expected issuer")

        jti = claims.get("jti")
        if jti is not None and type(jti) is str and jti in owner.revoked_jtis:
            raise RevokedToken("the token's jti is revoked")
        # A copy when the cache keeps the parsed claims: the caller may change what it gets.
        return dict(claims) if use_cache else claims

    def _verified(
        self, token: str | bytes, max_token_bytes: int, *, use_cache: bool = True, claims: bool = True
    ) -> tuple[_Verified, _State]:
        if len(token) > max_token_bytes:
            raise TokenTooLarge(f"the token exceeds {max_token_bytes} bytes")
        if isinstance(token, str):
            try:
                token = token.encode("ascii")
            except UnicodeEncodeError:
                raise MalformedToken("the token contains non-ASCII characters") from None
        if self._directory is not None:
            self._maybe_reload()
        state = self._state
        verified = self._cache.get((token, state.generation)) if use_cache else None
        fresh = verified is None
        if verified is None:
            try:
                verified = _new_verified(
                    _hotpath.check_compact(token, state.headers, _check_header, state, claims)
                )
            except UnknownKey:
                # Perhaps a key the kubelet has not swapped in yet: re-read the directory once.
                if not self._reload_for_unknown_kid():
                    raise
                state = self._state
                verified = _new_verified(
                    _hotpath.check_compact(token, state.headers, _check_header, state, claims)
                )
        # On the keys that actually verified, each against its own issuer's list: without a kid, a
        # revoked key elsewhere in the set must not block tokens of the others, and a kid revoked by
        # one issuer says nothing about another issuer's key of the same kid. (For a cached token the
        # lists cannot have changed, a reload empties the cache, but the rule is kept in this one place.)
        if state.any_revoked:
            live = tuple(key for key in verified.candidates if key.kid not in key.owner.revoked_kids)
            if not live:
                raise RevokedKey("the token was signed by a revoked key")
            if len(live) != len(verified.candidates):
                verified = verified._replace(candidates=live)
        if fresh and use_cache:
            with self._cache_lock:
                self._cache[token, state.generation] = verified
                if len(self._cache) > CACHE_SIZE:
                    del self._cache[next(iter(self._cache))]
        return verified, state


def _check_typ(header: Mapping[str, Any], expected: str) -> None:
    typ = header.get("typ")
    if not isinstance(typ, str) or _media_type(typ) != expected:
        raise InvalidType("the header typ does not match the policy")


MAX_CACHED_HEADERS = 256
MAX_CACHED_HEADER_BYTES = 2048


def _check_header(header_b64: bytes, state: _State) -> _Header:
    """Every rule on the header, then key selection; cached per header segment in ``state``.

    Called by _hotpath.check_compact for a header segment that is not in ``state.headers`` yet."""
    header = _hotpath.parse_object(_hotpath.b64decode(header_b64, "header"), "header")

    alg = header.get("alg")
    if not isinstance(alg, str):
        raise DisallowedAlgorithm("the header has no alg")
    if alg not in state.algorithms:
        raise DisallowedAlgorithm(f"alg {alg[:32]!r} is not allowed")
    if "crit" in header:
        crit = header["crit"]
        if not isinstance(crit, list) or not crit or not all(isinstance(c, str) for c in crit):
            raise MalformedToken("crit must be a non-empty list of strings")
        raise UnsupportedToken("the token uses a critical extension we do not understand")
    if "b64" in header:
        raise UnsupportedToken("the b64 header parameter (RFC 7797) is not supported")
    cty = header.get("cty")
    if isinstance(cty, str) and cty.lower() == "jwt":
        raise UnsupportedToken("nested JWTs are not accepted")

    if "kid" in header:
        kid = header["kid"]
        keys = state.by_kid.get(kid) if isinstance(kid, str) else None
        if not keys:
            if isinstance(kid, str) and kid in state.ambiguous_kids:
                raise AmbiguousKey("the token's kid names more than one key of an issuer")
            raise UnknownKey("no trusted key has the token's kid")
        usable = tuple(key for key in keys if alg in key.algs)
        if not usable:
            raise DisallowedAlgorithm("the token's alg does not match its key")
    else:
        usable = state.by_alg.get(alg, ())
        if not usable:
            raise UnknownKey("no trusted key fits the token's alg")

    checked = _Header(header=header, candidates=tuple((key, key.checks[alg]) for key in usable))
    # Headers are cached before any signature check, so anyone can fill the cache: bound it by count
    # and by entry size (real headers are a few hundred bytes). Correctness never depends on it.
    if len(header_b64) <= MAX_CACHED_HEADER_BYTES:
        if len(state.headers) >= MAX_CACHED_HEADERS:
            # Many distinct headers means someone is varying them on purpose: start over rather than
            # track recency on the hot path.
            state.headers.clear()
        state.headers[header_b64] = checked
    return checked


# --- directory loading ---------------------------------------------------------------------------


def _read_directory(directory: Path) -> tuple[_mounted.Version, _State]:
    """Read one consistent copy of the trust files and build a state from it."""
    try:
        marker, files = _mounted.read(directory, TRUST_FILE, max_bytes=MAX_CONFIGMAP_BYTES)
    except OSError as exc:
        raise TrustStoreError(f"cannot read the trust directory: {exc.strerror}") from None
    except ValueError:
        raise TrustStoreError("the trust directory exceeds 1 MiB") from None
    trust, _revision = parse_trust_files(files)
    return marker, _state_from_trust(trust)
