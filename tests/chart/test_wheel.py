"""The wheel holds the library, the CLI and the operator, and every part of it works from an install.

Why: whatever ships in the wheel runs where there is no source checkout (a workload's image, the
operator's image, a laptop). Code that needs the checkout (the local control plane, which builds its
binaries with ``tools/k8s-bins/build.sh`` and reads ``crds/`` and the chart) must stay out of it.
So the wheel is built from the repository as a user would build it, its file list is checked against
the source tree, and it is installed into a clean virtual environment outside the checkout, where
every module it ships must import, the command line must offer only the commands that need no
checkout, and those commands must do their job.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SOURCES = REPO / "operator"
# Every command of the installed `jwt-trust`. A new command belongs here only once it works from an
# install alone (no checkout, no build script, no files outside the wheel). `discovery` needs the
# operator extra, which this test's install borrows.
INSTALLED_COMMANDS = {"verify", "mint", "inspect", "keygen", "discovery", "authentication-config"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``pip wheel --no-deps .`` in a fresh copy of the repository's files (tracked or new, not ignored).

    A copy, as a fresh clone or CI would build it: setuptools reuses ``build/`` between builds, so an
    in-place build could ship a module removed from the sources since, and would leave ``build/`` behind.
    """
    source = tmp_path_factory.mktemp("checkout")
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        if (REPO / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    out = tmp_path_factory.mktemp("wheel")
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", str(source), "-w", str(out)],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    (built,) = out.glob("jwt_trust-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str], Path]:
    """A clean virtual environment holding the wheel; its environment variables; a cwd outside the repo.

    The wheel's dependencies (cryptography, and kopf & co. for the operator modules) are borrowed from
    this test's environment through a path entry: its ``.pth`` files are not processed that way, so the
    editable install of the checkout stays invisible and ``jwt_trust`` can only come from the wheel.
    """
    root = tmp_path_factory.mktemp("installed")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    pip = (sys.executable, "-m", "pip", "--python", str(python))
    result = subprocess.run(
        [*pip, "install", "--quiet", "--no-deps", "--no-index", str(wheel)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    borrowed = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "zz-borrowed-dependencies.pth").write_text("".join(f"{path}\n" for path in sorted(borrowed)))
    env = {"PATH": f"{venv / 'bin'}{os.pathsep}/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"}
    cwd = root / "elsewhere"
    cwd.mkdir()
    return venv, env, cwd


def run(installed: tuple[Path, dict[str, str], Path], *argv: str) -> subprocess.CompletedProcess[str]:
    venv, env, cwd = installed
    return subprocess.run(
        [str(venv / "bin" / argv[0]), *argv[1:]],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def wheel_modules(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    return sorted(
        name.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
        for name in names
        if name.endswith(".py")
    )


def test_the_wheel_ships_exactly_the_package_sources_and_no_test_harness(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    dist_info = {name for name in names if name.split("/")[0].endswith(".dist-info")}
    shipped = {name for name in names if name not in dist_info}
    sources = {
        path.relative_to(SOURCES).as_posix()
        for path in (SOURCES / "jwt_trust").rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix in {".py", ".pyi", ".typed"}
    }
    compiled = {name for name in shipped if re.fullmatch(r"jwt_trust/_speedups\.[\w.-]+\.so", name)}
    assert shipped - compiled == sources
    assert all(name.startswith("jwt_trust/") for name in shipped)
    assert not [name for name in shipped if "testing" in name.split("/")]
    assert "jwt_trust_testing" not in {module.split(".")[0] for module in wheel_modules(wheel)}


def test_the_only_installed_command_is_jwt_trust(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [name for name in archive.namelist() if name.endswith(".dist-info/entry_points.txt")]
        entry_points = configparser.ConfigParser()
        entry_points.read_string(archive.read(name).decode())
    assert entry_points.sections() == ["console_scripts"]
    assert dict(entry_points["console_scripts"]) == {"jwt-trust": "jwt_trust.cli:entrypoint"}


def test_every_shipped_module_imports_from_the_install_outside_the_checkout(
    wheel: Path, installed: tuple[Path, dict[str, str], Path]
) -> None:
    venv = installed[0]
    modules = wheel_modules(wheel)
    assert "jwt_trust.cli" in modules
    assert "jwt_trust.kube.handlers" in modules
    script = (
        "import importlib, json, sys\n"
        f"files = {{name: importlib.import_module(name).__file__ for name in {modules!r}}}\n"
        "print(json.dumps(files))\n"
    )
    result = run(installed, "python", "-c", script)
    assert result.returncode == 0, result.stderr[-3000:]
    for module, file in json.loads(result.stdout).items():
        assert Path(file).is_relative_to(venv), f"{module} imported from {file}, not from the install"


def test_the_installed_cli_offers_only_commands_that_need_no_checkout(
    installed: tuple[Path, dict[str, str], Path],
) -> None:
    usage = run(installed, "jwt-trust", "--help")
    assert usage.returncode == 0, usage.stderr
    offered = re.search(r"\{([a-z,-]+)\}", usage.stdout)
    assert offered is not None, usage.stdout
    assert set(offered.group(1).split(",")) == INSTALLED_COMMANDS
    for command in sorted(INSTALLED_COMMANDS):
        assert run(installed, "jwt-trust", command, "--help").returncode == 0
    # The local control plane is development tooling of the repository, not an installed command.
    refused = run(installed, "jwt-trust", "dev-cluster", "up")
    assert refused.returncode == 2
    assert "invalid choice: 'dev-cluster'" in refused.stderr


def test_the_installed_cli_mints_and_verifies_from_files_alone(
    installed: tuple[Path, dict[str, str], Path],
) -> None:
    cwd = installed[2]
    issuer = ("--issuer", "https://issuer.example")
    keygen = run(installed, "jwt-trust", "keygen", *issuer, "--out", "keys", "--jwks-out", "jwks.json")
    assert keygen.returncode == 0, keygen.stderr
    assert (cwd / "jwks.json").is_file()
    minted = run(installed, "jwt-trust", "mint", "--key-dir", "keys", "--subject", "ann", "--audience", "api")
    assert minted.returncode == 0, minted.stderr
    token = minted.stdout.strip()
    verified = run(installed, "jwt-trust", "verify", token, "--jwks", "jwks.json", *issuer, "--audience=api")
    assert verified.returncode == 0, verified.stderr
    assert json.loads(verified.stdout)["sub"] == "ann"
    rejected = run(installed, "jwt-trust", "verify", token, "--jwks", "jwks.json", *issuer, "--audience=x")
    assert rejected.returncode == 1
    assert rejected.stderr.startswith("rejected: ")
