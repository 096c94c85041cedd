"""Reading a directory that the kubelet mounts from a ConfigMap or Secret.

The kubelet writes each new version into a fresh hidden directory and then swaps the ``..data`` symlink
to it atomically; the visible files are symlinks through ``..data``. Both the signer (Secret) and the
verifier (ConfigMap) follow such directories, so the two rules live here once: the version of a copy
is the ``..data`` target (or, for a plain directory, the mtime and size of one named file), and a copy
is read through the resolved target so that a swap during the read cannot mix two versions.
"""

from __future__ import annotations

import os
from pathlib import Path

Version = tuple[object, ...]


def version(directory: Path, marker_file: str) -> Version:
    """Changes whenever the content may have changed; raises OSError when the directory is unreadable."""
    data_link = directory / "..data"
    if data_link.is_symlink():
        return ("..data", os.readlink(data_link))
    stat = (directory / marker_file).stat()
    return ("mtime", stat.st_mtime_ns, stat.st_size)


def read(directory: Path, marker_file: str, *, max_bytes: int) -> tuple[Version, dict[str, bytes]]:
    """One consistent copy of the visible files. Raises OSError, or ValueError when over ``max_bytes``."""
    current = version(directory, marker_file)
    base = directory / str(current[1]) if current[0] == "..data" else directory
    files: dict[str, bytes] = {}
    total = 0
    for entry in os.scandir(base):
        if entry.name.startswith(".") or not entry.is_file():
            continue
        content = Path(entry.path).read_bytes()
        total += len(content)
        if total > max_bytes:
            raise ValueError(f"the mounted directory holds more than {max_bytes} bytes")
        files[entry.name] = content
    return current, files
