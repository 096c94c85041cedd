"""A Kubernetes API server JWT authenticator for an Issuer served by the discovery service.

The API server's structured authentication configuration (``--authentication-config``) takes no inline
keys: it fetches the Issuer's OpenID Provider metadata from ``discoveryURL`` and the keys from its
``jwks_uri``, trusting ``certificateAuthority``. This module renders that stanza from an Issuer object
(its ``spec.issuer`` and the ``status.discovery`` the operator writes); ``jwt-trust
authentication-config`` prints it. Pure: no I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

API_VERSION = "apiserver.config.k8s.io/v1"


class NotServed(ValueError):
    """The Issuer object does not say where the discovery service serves it."""


def jwt_authenticator(
    issuer: Mapping[str, Any],
    *,
    audiences: Sequence[str],
    certificate_authority: str | None = None,
    username_claim: str = "sub",
    username_prefix: str | None = None,
) -> dict[str, Any]:
    """One ``jwt`` entry: the issuer URL exactly as tokens carry it, the discovery document's location,
    the audiences, and a username taken from ``username_claim`` under a prefix naming the Issuer (so
    that its subjects cannot pass for other users; ``jwt-trust:<namespace>/<name>:`` by default)."""
    meta = issuer.get("metadata") or {}
    url = (issuer.get("spec") or {}).get("issuer")
    served = (issuer.get("status") or {}).get("discovery") or {}
    if not isinstance(url, str) or not url:
        raise NotServed("the object has no spec.issuer: is it an Issuer?")
    if not served.get("discoveryURL"):
        raise NotServed(
            f"Issuer {meta.get('namespace')}/{meta.get('name')} is not served by the discovery service: "
            "set spec.discovery.enabled and enable the service in the operator's chart"
        )
    if not audiences:
        raise NotServed("at least one audience is needed: the API server accepts only tokens made for it")
    prefix = (
        username_prefix
        if username_prefix is not None
        else f"jwt-trust:{meta.get('namespace')}/{meta.get('name')}:"
    )
    section: dict[str, Any] = {
        "url": url,
        "discoveryURL": served["discoveryURL"],
        "audiences": list(audiences),
    }
    if len(audiences) > 1:
        section["audienceMatchPolicy"] = "MatchAny"
    if certificate_authority:
        section["certificateAuthority"] = certificate_authority
    return {"issuer": section, "claimMappings": {"username": {"claim": username_claim, "prefix": prefix}}}


def authentication_configuration(authenticators: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": "AuthenticationConfiguration", "jwt": list(authenticators)}


# A plain scalar YAML reads back as the same string: no ": ", no trailing ":", no indicator first.
_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_./-]*(?::[A-Za-z0-9_./-]+)*$")


def to_yaml(value: Any, indent: int = 0) -> str:
    """YAML for plain data (mappings, lists, strings, numbers, booleans): multi-line strings as literal
    blocks (a PEM stays readable), anything ambiguous quoted as JSON, which YAML reads as it is."""
    pad = " " * indent
    if isinstance(value, Mapping):
        lines = []
        for key, item in value.items():
            if isinstance(item, Mapping | list) and item:
                lines.append(f"{pad}{key}:\n{to_yaml(item, indent + 2)}")
            else:
                lines.append(f"{pad}{key}: {_scalar(item, indent + 2)}")
        return "\n".join(lines)
    if isinstance(value, list):
        lines = []
        for item in value:
            if isinstance(item, Mapping | list) and item:
                first, *rest = to_yaml(item, indent + 2).split("\n")
                lines.append("\n".join([f"{pad}- {first.lstrip()}", *rest]))
            else:
                lines.append(f"{pad}- {_scalar(item, indent + 2)}")
        return "\n".join(lines)
    return pad + _scalar(value, indent)


def _scalar(value: Any, indent: int) -> str:
    if not isinstance(value, str):
        return json.dumps(value)
    if (
        "\n" in value
        and value.endswith("\n")
        and value.strip("\n")
        and all(line and line.strip() == line and line.isprintable() for line in value[:-1].split("\n"))
    ):
        # A literal block (a PEM stays readable): lines kept as they are, one final newline.
        return "|\n" + "\n".join(" " * indent + line for line in value[:-1].split("\n"))
    if _PLAIN.match(value) and value.lower() not in _RESERVED:
        return value
    return '"' + "".join(_escape(c) for c in value) + '"'


_RESERVED = {"true", "false", "null", "yes", "no", "on", "off", "y", "n", "~"}
_YAML_BREAKS = {"\x85", "\u2028", "\u2029", "\ufeff"}


def _escape(char: str) -> str:
    """One character of a double-quoted YAML scalar: escaped unless printable and no YAML line break."""
    if char in ('"', "\\"):
        return "\\" + char
    if char.isprintable() and char not in _YAML_BREAKS:
        return char
    code = ord(char)
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
