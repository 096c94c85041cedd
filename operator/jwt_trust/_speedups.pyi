# Type stub of the optional C module (_speedups.c); jwt_trust._hotpath documents the behaviour.
from collections.abc import Callable, Mapping
from typing import Any

def split_token(token: bytes, /) -> tuple[bytes, bytes, bytes, bytes]: ...
def parse_object(raw: bytes, part: str, /) -> dict[str, Any]: ...
def ecdsa_der(signature: bytes, order: bytes, /) -> bytes | None: ...
def check_claims(
    claims: dict[str, Any],
    now: float,
    leeway: float,
    audiences: tuple[str, ...],
    required: tuple[str, ...],
    /,
) -> None: ...
def check_signature(
    verify: Callable[..., None],
    extra: tuple[Any, ...],
    size: int,
    order: bytes | None,
    signature: bytes,
    data: bytes,
    /,
) -> bool: ...

_Entry = tuple[dict[str, Any], tuple[tuple[Any, Callable[[bytes, bytes], bool]], ...]]

def check_compact(
    token: bytes,
    headers: Mapping[bytes, _Entry],
    check_header: Callable[[bytes, Any], _Entry],
    context: Any,
    parse_claims: bool,
    /,
) -> tuple[dict[str, Any], bytes, dict[str, Any] | None, tuple[Any, ...]]: ...
