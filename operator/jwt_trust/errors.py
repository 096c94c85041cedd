"""One exception tree for the whole library, rooted at :class:`JWTTrustError`.

A caller that only wants "is this token good?" catches :class:`InvalidToken`; every rejection of a
token is one of its subclasses, so a caller (or a metric) can tell the reasons apart without parsing
messages. Messages never contain key material or the token itself: they may end up in logs.
"""

from __future__ import annotations


class JWTTrustError(Exception):
    """Root of every error this library raises on purpose."""


# --- tokens -------------------------------------------------------------------------------------


class InvalidToken(JWTTrustError):
    """The token was rejected. The subclass says why."""


class TokenTooLarge(InvalidToken):
    """The token (or one of its decoded parts) exceeds the configured size limit."""


class MalformedToken(InvalidToken):
    """Not a compact JWS: wrong segment count, bad base64url, bad JSON, JWE or JSON serialization."""


class UnsupportedToken(InvalidToken):
    """A well-formed JWS using a feature we refuse: unknown ``crit``, ``b64: false``, nested JWT."""


class DisallowedAlgorithm(InvalidToken):
    """``alg`` is missing, ``none``, not on the allow-list, or different from the key's ``alg``."""


class UnknownKey(InvalidToken):
    """No usable trusted key matches the token's ``kid`` (or, without ``kid``, its ``alg``)."""


class AmbiguousKey(InvalidToken):
    """The token's ``kid`` names two different keys in one issuer's key set, so neither is used."""


class InvalidSignature(InvalidToken):
    """The signature does not verify with the selected key."""


class InvalidType(InvalidToken):
    """The header ``typ`` does not match the policy's ``typ``."""


class InvalidClaims(InvalidToken):
    """The claims are not as the policy requires (base class of the claim errors)."""


class MissingClaim(InvalidClaims):
    """A required claim (``exp`` by default, or one the policy requires) is absent or null."""


class MalformedClaim(InvalidClaims):
    """A registered claim has the wrong JSON type (e.g. ``exp`` as a string, ``aud`` as a number)."""


class ExpiredToken(InvalidClaims):
    """``now >= exp + leeway``."""


class NotYetValid(InvalidClaims):
    """``nbf > now + leeway``."""


class IssuedInFuture(InvalidClaims):
    """``iat > now + leeway``."""


class InvalidIssuer(InvalidClaims):
    """``iss`` is not the issuer that owns the verifying key (or the one the caller expects)."""


class InvalidAudience(InvalidClaims):
    """``aud`` does not contain an accepted audience, or is present when no audience is configured."""


class RevokedKey(InvalidToken):
    """The token was signed by a revoked ``kid``."""


class RevokedToken(InvalidToken):
    """The token's ``jti`` is on the revocation list."""


# --- keys, trust stores, signing ------------------------------------------------------------------


class InvalidKey(JWTTrustError):
    """A JWK or PEM key that cannot be used (wrong type, too small, off-curve, private where public)."""


class WeakKey(InvalidKey):
    """A key of a supported type that is known to be weak, so no signature by it can be trusted.

    An RSA modulus with the ROCA fingerprint (CVE-2017-15361), an RSA public exponent that is even or
    outside [65537, 2**256), an Ed25519 point of small order or in a non-canonical encoding.
    """


class TrustStoreError(JWTTrustError):
    """A trust directory or JWKS that cannot be loaded (missing file, malformed JSON, bad format)."""


class SigningError(JWTTrustError):
    """The signer cannot mint a token (no active key, unreadable key directory, bad claims)."""


class NoActiveKey(SigningError):
    """No key in the signing-key directory is active now (e.g. issuance paused after a revocation)."""
