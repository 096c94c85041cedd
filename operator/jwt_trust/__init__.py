"""jwt-trust: distribute JWT trust to isolated environments and verify tokens offline.

The public façade of the offline library. It needs only ``cryptography``: a workload imports
``TrustStore`` and verifies tokens from a mounted ConfigMap without any call to the identity provider.
"""

from .errors import InvalidToken, JWTTrustError
from .signer import Signer
from .verifier import TrustStore

__all__ = ["InvalidToken", "JWTTrustError", "Signer", "TrustStore"]
