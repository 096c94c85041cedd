"""Helpers of the consumer e2e tests: the Go checker built from the consumers' upstream API modules, the
test copies of their CRDs, and a monitor of the rotation invariant on consumer objects.

The checker (``tests/consumers/checker``, built and cached by ``tests/consumers/build.sh``) decodes every
object as the upstream project's Go types do, strictly, and verifies tokens with go-jose against the
keys the object holds: the test never judges our objects with our own parser.
"""

from __future__ import annotations

import base64
import json
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from support import Kube, wait_for

from jwt_trust.errors import NoActiveKey
from jwt_trust.signer import Signer

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CRDS = HERE / "crds"
ISTIO_CRD = "requestauthentications.security.istio.io"
BUILD_TIMEOUT_SECONDS = 900


def build_checker() -> Path:
    completed = subprocess.run(
        ["bash", str(ROOT / "tests" / "consumers" / "build.sh")],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_SECONDS,
        check=False,
    )
    if completed.returncode != 0:
        raise AssertionError(f"tests/consumers/build.sh failed:\n{completed.stderr[-4000:]}")
    return Path(completed.stdout.strip().splitlines()[-1])


class Checker:
    """One running checker process; :meth:`check` sends a request line and reads the answer line."""

    def __init__(self, binary: Path) -> None:
        self._process = subprocess.Popen(
            [str(binary)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
        )
        self._lock = threading.Lock()

    def check(
        self, obj: dict[str, Any], token: str = "", *, issuer: str = "", audience: str = ""
    ) -> dict[str, Any]:
        request = {"object": obj, "token": token, "issuer": issuer, "audience": audience}
        with self._lock:
            assert self._process.stdin is not None
            assert self._process.stdout is not None
            self._process.stdin.write(json.dumps(request) + "\n")
            self._process.stdin.flush()
            answer: dict[str, Any] = json.loads(self._process.stdout.readline())
        return answer

    def close(self) -> None:
        for stream in (self._process.stdin, self._process.stdout):
            if stream is not None:
                stream.close()
        self._process.wait(timeout=10)


def install_istio_crd(kube: Kube) -> None:
    kube.plane.kubectl("apply", "--server-side", "-f", str(CRDS / f"{ISTIO_CRD}.yaml"))
    kube.plane.kubectl("wait", "--for=condition=Established", f"crd/{ISTIO_CRD}", "--timeout=60s")


def mint(secret: dict[str, bytes], audience: str) -> str:
    return Signer.from_secret_data(secret).mint(subject="svc", audience=audience)


def token_kid(token: str) -> str:
    return str(json.loads(base64.urlsafe_b64decode(token.split(".", maxsplit=1)[0] + "=="))["kid"])


class ConsumerMonitor:
    """The rotation invariant on consumer objects, judged by the Go checker.

    A recorder polls the Issuer's Secret and the consumer objects (``kinds/names`` in ``namespace``); a
    checker thread signs with copies of the Secret, fresh and ``propagation`` seconds old, and verifies
    every unexpired token against every consumer object's copies, fresh and ``propagation`` old (the
    oldest copy a consumer may hold). Every rejection of a valid token is a failure.
    """

    def __init__(
        self,
        kube: Kube,
        checker: Checker,
        namespace: str,
        secret: str,
        consumers: list[str],
        *,
        issuer: str,
        audience: str,
        propagation: float,
        lifetime: int,
    ) -> None:
        self.kube, self.checker, self.namespace, self.secret = kube, checker, namespace, secret
        self.consumers, self.issuer, self.audience = consumers, issuer, audience
        self.propagation, self.lifetime = propagation, lifetime
        self.snapshots: list[tuple[float, dict[str, bytes], dict[str, dict[str, Any]]]] = []
        self.failures: list[str] = []
        self.kids: set[str] = set()
        self.minted = self.verified = self.paused = 0
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._record, daemon=True),
            threading.Thread(target=self._check, daemon=True),
        ]

    def __enter__(self) -> ConsumerMonitor:
        self._threads[0].start()
        wait_for(lambda: self.copy(time.time(), self.propagation + 0.5), timeout=30, what="a copy P old")
        self._threads[1].start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=20)

    def copy(self, now: float, age: float) -> tuple[dict[str, bytes], dict[str, dict[str, Any]]] | None:
        older = [s for s in self.snapshots if s[0] <= now - age]
        return (older[-1][1], older[-1][2]) if older else None

    def _record(self) -> None:
        names = [f"secret/{self.secret}", *self.consumers]
        while not self._stop.is_set():
            result = self.kube.plane.kubectl("get", *names, "-n", self.namespace, "-o", "json", check=False)
            if result.returncode == 0:
                items = json.loads(result.stdout)["items"]
                objects = {f"{i['kind'].lower()}/{i['metadata']['name']}": i for i in items}
                secret = objects.pop(f"secret/{self.secret}", None)
                if secret is not None and len(objects) == len(self.consumers):
                    data = {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}
                    self.snapshots.append((time.time(), data, objects))
            time.sleep(0.1)

    def _check(self) -> None:
        tokens: list[tuple[str, int]] = []
        while not self._stop.is_set():
            now = time.time()
            for age in (0.0, self.propagation):
                copies = self.copy(now, age)
                if copies is None:
                    continue
                try:
                    tokens.append((mint(copies[0], self.audience), int(now) + self.lifetime))
                    self.minted += 1
                except NoActiveKey:
                    self.paused += 1
            for age in (0.0, self.propagation):
                copies = self.copy(now, age)
                if copies is None:
                    continue
                for name, obj in copies[1].items():
                    for token, exp in tokens:
                        if exp <= time.time():
                            continue  # expired: the consumers allow no leeway, rejection is correct
                        answer = self.checker.check(obj, token, issuer=self.issuer, audience=self.audience)
                        if answer.get("verified"):
                            self.verified += 1
                            self.kids.add(token_kid(token))
                        elif exp > time.time() + 0.5:  # not a token expiring during the check
                            self.failures.append(f"{name} (copy {age}s old): {answer.get('error')}")
            tokens = [(t, exp) for t, exp in tokens if exp > time.time()]
            time.sleep(0.3)
