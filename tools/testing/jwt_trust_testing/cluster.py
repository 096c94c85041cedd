"""A real, throw-away Kubernetes control plane (etcd + kube-apiserver + kube-controller-manager).

Why: the operator's end-to-end tests and the local demo need the real API server's behaviour (schema
validation, server-side apply, RBAC, TokenRequest, garbage collection, namespace deletion), not a fake.
By default no kubelet and no scheduler run, so Pods never start: tests assert on API objects only.
With ``start(..., node=True)`` (or :class:`~jwt_trust_testing.node.NodeOptions`) the plane is arranged
for one real node (:mod:`jwt_trust_testing.node`): the API server binds the pod bridge's gateway
address, ServiceAccount admission and the lease endpoint reconciler are on, kube-scheduler runs, and
the controller manager also runs the node-lifecycle, deployment, replicaset, endpointslice and
disruption controllers; then containerd, kube-proxy and the kubelet start and the node goes Ready.

Guarantees:
- every start gets fresh PKI, free loopback ports and its own etcd data directory under ``workdir``;
- the admin kubeconfig (``workdir/admin.kubeconfig``, mode 0600) holds its credentials inline and uses
  the group ``system:masters``; the CA and keys live in ``workdir/pki`` and are never printed or logged;
- each process runs in its own session, logs to ``workdir/<name>.log``, and :meth:`ControlPlane.stop`
  terminates the whole process groups (SIGTERM, then SIGKILL) and removes the etcd data; a cluster
  started in-process is also stopped at interpreter exit;
- a failed start stops whatever it started and raises :class:`ControlPlaneError` with the log tail.

The dev-cluster helpers (:func:`dev_up`, :func:`dev_env`, :func:`dev_down`) keep one detached cluster
alive across commands, described by ``<state dir>/state.json``.

Standard library plus ``cryptography`` only.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import datetime
import ipaddress
import json
import os
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

if TYPE_CHECKING:
    from .node import Network, Node, NodeOptions

__all__ = [
    "ControlPlane",
    "ControlPlaneError",
    "build_binaries",
    "default_dev_dir",
    "dev_down",
    "dev_env",
    "dev_up",
    "find_repo_root",
    "start",
]

_BUILD_SCRIPT = Path("tools/k8s-bins/build.sh")
_KCM_CONTROLLERS = (
    "garbage-collector-controller,namespace-controller,serviceaccount-controller,"
    "root-ca-certificate-publisher-controller,clusterrole-aggregation-controller"
)
# With a node: what Deployments, Services, PodDisruptionBudgets and a node's taints need.
_KCM_NODE_CONTROLLERS = (
    ",node-lifecycle-controller,deployment-controller,replicaset-controller,endpointslice-controller,"
    "disruption-controller,taint-eviction-controller,pod-garbage-collector-controller"
)
_LOG_TAIL_LINES = 40

# Handles of detached (dev-cluster) processes: they outlive this interpreter on purpose, and keeping the
# handles stops Popen.__del__ from warning that a child is "still running" when a caller drops the plane.
_DETACHED: list[subprocess.Popen[bytes]] = []


class ControlPlaneError(RuntimeError):
    """The control plane could not be built, started or reached."""


# --- locating and building the binaries -----------------------------------------------------------


def find_repo_root() -> Path:
    """The repository root: the checkout this module lives in (``tools/testing/jwt_trust_testing``), found
    as the first ancestor of this file holding the build script; failing that (a non-editable install of
    the harness), the first such ancestor of the cwd."""
    for start_dir in (Path(__file__).resolve().parent, Path.cwd()):
        for candidate in (start_dir, *start_dir.parents):
            if (candidate / _BUILD_SCRIPT).is_file():
                return candidate
    raise ControlPlaneError(f"cannot find {_BUILD_SCRIPT} above {Path.cwd()} or {Path(__file__).parent}")


def build_binaries(repo_root: Path | None = None) -> Path:
    """Run ``tools/k8s-bins/build.sh`` (instant when cached) and return the directory of the binaries."""
    root = repo_root if repo_root is not None else find_repo_root()
    result = subprocess.run(["bash", str(root / _BUILD_SCRIPT)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ControlPlaneError(f"build.sh failed ({result.returncode}):\n{_tail(result.stderr)}")
    lines = result.stdout.strip().splitlines()
    bin_dir = Path(lines[-1]) if lines else Path()
    if not (bin_dir / "kube-apiserver").is_file():
        raise ControlPlaneError(f"build.sh printed no usable bin dir: {result.stdout.strip()!r}")
    return bin_dir


# --- the control plane ----------------------------------------------------------------------------


@dataclass
class ControlPlane:
    """A running control plane.

    ``pids`` are in start order: etcd, kube-apiserver, then kube-controller-manager if started.
    """

    workdir: Path
    bin_dir: Path
    api_port: int
    kubeconfig: Path
    ca_file: Path
    pids: list[int]
    # Popen handles exist only in the process that started the cluster; they let stop() reap children.
    _procs: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict, repr=False, compare=False)
    # The command line of each component by name, so a test can restart one (fault injection).
    _argv: dict[str, tuple[int, list[str]]] = field(default_factory=dict, repr=False, compare=False)
    # The address the API server binds: loopback, or the pod bridge's gateway when a node runs.
    api_host: str = "127.0.0.1"
    node: Node | None = field(default=None, repr=False, compare=False)
    network: Network | None = field(default=None, repr=False, compare=False)

    @property
    def server(self) -> str:
        return f"https://{self.api_host}:{self.api_port}"

    def env(self) -> dict[str, str]:
        """A copy of the environment pointing kubectl/helm at this cluster and its binaries."""
        env = dict(os.environ)
        env["KUBECONFIG"] = str(self.kubeconfig)
        env["PATH"] = f"{self.bin_dir}{os.pathsep}{env.get('PATH', '')}"
        return env

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        kubeconfig: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run this cluster's kubectl; with ``check`` a non-zero exit raises with kubectl's stderr."""
        env = self.env()
        if kubeconfig is not None:
            env["KUBECONFIG"] = str(kubeconfig)
        result = subprocess.run(
            [str(self.bin_dir / "kubectl"), *args],
            input=input,
            capture_output=True,
            text=True,
            env=env,
            check=False,
            timeout=120,
        )
        if check and result.returncode != 0:
            raise ControlPlaneError(
                f"kubectl {shlex.join(args)} exited {result.returncode}: {result.stderr.strip()}"
            )
        return result

    def admin_ssl_context(self) -> ssl.SSLContext:
        """A TLS context that trusts the cluster CA and presents the admin client certificate."""
        context = ssl.create_default_context(cafile=str(self.ca_file))
        pki = self.workdir / "pki"
        context.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
        return context

    def service_account_kubeconfig(
        self, namespace: str, name: str, path: Path, *, duration_seconds: int = 7200
    ) -> Path:
        """Write a kubeconfig at ``path`` that authenticates as ServiceAccount ``namespace/name``.

        The ServiceAccount is created if missing; the token comes from the TokenRequest API.
        """
        if self.kubectl("get", "serviceaccount", name, "-n", namespace, check=False).returncode != 0:
            self.kubectl("create", "serviceaccount", name, "-n", namespace)
        token = self.kubectl(
            "create", "token", name, "-n", namespace, f"--duration={duration_seconds}s"
        ).stdout.strip()
        user = f"system:serviceaccount:{namespace}:{name}"
        _write_kubeconfig(
            path,
            server=self.server,
            ca_pem=self.ca_file.read_bytes(),
            user_name=user,
            user={"token": token},
            namespace=namespace,
        )
        return path

    def healthy(self) -> bool:
        """True if every process is alive and the API server answers ``/readyz``."""
        return all(_alive(pid) for pid in self.pids) and _readyz(self.api_host, self.api_port, self.ca_file)

    def restart(self, name: str, *, timeout: float = 60.0) -> None:
        """Stop one component (``kube-apiserver``, ``etcd``, ...) and start it again with the same flags.

        Only for a control plane started in this process. Waits until the API server is ready again.
        """
        if name not in self._argv:
            raise ControlPlaneError(f"no component {name!r} started by this process")
        pid, argv = self._argv[name]
        _terminate_group(pid, self._procs.pop(pid, None))
        _spawn(self, name, argv)
        _wait_for(
            lambda: _readyz(self.api_host, self.api_port, self.ca_file),
            time.monotonic() + timeout,
            self,
            f"{name} restart",
        )

    def stop(self) -> None:
        """Stop the node first (if any), then terminate every process group (newest first), wait,
        SIGKILL stragglers, drop the etcd data; last, the node's bridge and host state."""
        if self.node is not None:
            self.node.stop()
        for pid in reversed(self.pids):
            _terminate_group(pid, self._procs.get(pid))
        self.pids.clear()
        self._procs.clear()
        shutil.rmtree(self.workdir / "etcd-data", ignore_errors=True)
        if self.network is not None:
            from .node import release_network  # noqa: PLC0415 - only with a node

            release_network(self.network)

    def __enter__(self) -> ControlPlane:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def start(
    workdir: Path,
    *,
    controller_manager: bool = True,
    bin_dir: Path | None = None,
    timeout: float = 120,
    detach: bool = False,
    apiserver_args: Sequence[str] = (),
    node: bool | NodeOptions = False,
) -> ControlPlane:
    """Start etcd, kube-apiserver and (by default) kube-controller-manager; return once usable.

    ``apiserver_args`` are added to kube-apiserver's flags (``--authentication-config=...``, say).
    ``node`` (``True`` or :class:`~jwt_trust_testing.node.NodeOptions`) adds kube-scheduler and one
    kubelet node (``plane.node``); it needs root and the node's packages, and is never detached.

    "Usable" means ``/readyz`` is OK and, with the controller manager, the ``default`` ServiceAccount
    exists (proof that its controllers run); with a node, also that the node is Ready and untainted.
    With ``detach`` the processes are not stopped at exit.
    """
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    bins = bin_dir if bin_dir is not None else build_binaries()
    deadline = time.monotonic() + timeout
    network: Network | None = None
    node_bins: Path | None = None
    api_host = "127.0.0.1"
    if node is not False:
        if detach:
            raise ControlPlaneError("a control plane with a node cannot be detached")
        from .node import GATEWAY, build_node_binaries, prepare_network  # noqa: PLC0415

        node_bins = build_node_binaries(find_repo_root())
        network = prepare_network()
        api_host = GATEWAY
    pki = _write_pki(workdir / "pki", extra_ips=[api_host])
    etcd_port, peer_port, api_port = _free_ports(3)
    kubeconfig = workdir / "admin.kubeconfig"
    _write_kubeconfig(
        kubeconfig,
        server=f"https://{api_host}:{api_port}",
        ca_pem=pki["ca.crt"].read_bytes(),
        user_name="admin",
        user={
            "client-certificate-data": _b64(pki["admin.crt"].read_bytes()),
            "client-key-data": _b64(pki["admin.key"].read_bytes()),
        },
        namespace=None,
    )
    plane = ControlPlane(
        workdir=workdir,
        bin_dir=bins,
        api_port=api_port,
        kubeconfig=kubeconfig,
        ca_file=pki["ca.crt"],
        pids=[],
        api_host=api_host,
        network=network,
    )
    if not detach:
        atexit.register(plane.stop)
    data_dir = workdir / "etcd-data"
    shutil.rmtree(data_dir, ignore_errors=True)
    current_log = "etcd.log"
    try:
        etcd_url = f"http://127.0.0.1:{etcd_port}"
        peer_url = f"http://127.0.0.1:{peer_port}"
        _spawn(
            plane,
            "etcd",
            [
                str(bins / "etcd"),
                "--name=default",
                f"--data-dir={data_dir}",
                "--log-level=warn",
                "--unsafe-no-fsync=true",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=default={peer_url}",
            ],
        )
        _wait_for(lambda: _http_ok(f"{etcd_url}/health"), deadline, plane, "etcd")

        current_log = "kube-apiserver.log"
        _spawn(
            plane,
            "kube-apiserver",
            [
                str(bins / "kube-apiserver"),
                f"--etcd-servers={etcd_url}",
                f"--bind-address={api_host}",
                f"--advertise-address={api_host}",
                f"--secure-port={api_port}",
                f"--tls-cert-file={pki['apiserver.crt']}",
                f"--tls-private-key-file={pki['apiserver.key']}",
                f"--client-ca-file={pki['ca.crt']}",
                "--authorization-mode=RBAC",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pki['sa.pub']}",
                f"--service-account-signing-key-file={pki['sa.key']}",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--allow-privileged=true",
                *(
                    # Pods run: they get ServiceAccount tokens, and the `kubernetes` Service's endpoints
                    # name this API server; it reaches the kubelet (logs, exec) with the admin cert.
                    [
                        "--endpoint-reconciler-type=lease",
                        f"--kubelet-client-certificate={pki['admin.crt']}",
                        f"--kubelet-client-key={pki['admin.key']}",
                        "--kubelet-preferred-address-types=InternalIP",
                    ]
                    if network is not None
                    # Pods are never created here; keeping this off makes the cluster usable before (or
                    # without) the serviceaccount controller has created `default` ServiceAccounts.
                    else ["--disable-admission-plugins=ServiceAccount", "--endpoint-reconciler-type=none"]
                ),
                f"--cert-dir={workdir / 'pki'}",
                "--v=1",
                *apiserver_args,
            ],
        )
        _wait_for(lambda: _readyz(api_host, api_port, pki["ca.crt"]), deadline, plane, "kube-apiserver")

        if controller_manager:
            current_log = "kube-controller-manager.log"
            _spawn(
                plane,
                "kube-controller-manager",
                [
                    str(bins / "kube-controller-manager"),
                    f"--kubeconfig={kubeconfig}",
                    f"--controllers={_KCM_CONTROLLERS}{_KCM_NODE_CONTROLLERS if network else ''}",
                    "--leader-elect=false",
                    "--secure-port=0",
                    f"--root-ca-file={pki['ca.crt']}",
                    "--use-service-account-credentials=false",
                    "--v=1",
                ],
            )

            def default_sa_exists() -> bool:
                args = ("get", "serviceaccount", "default", "-n", "default", "-o", "name")
                return plane.kubectl(*args, check=False).returncode == 0

            _wait_for(default_sa_exists, deadline, plane, "kube-controller-manager")

        if network is not None and node_bins is not None:
            from .node import Node, NodeOptions  # noqa: PLC0415

            current_log = "kube-scheduler.log"
            _spawn(
                plane,
                "kube-scheduler",
                [
                    str(node_bins / "kube-scheduler"),
                    f"--kubeconfig={kubeconfig}",
                    f"--authentication-kubeconfig={kubeconfig}",
                    f"--authorization-kubeconfig={kubeconfig}",
                    "--leader-elect=false",
                    "--bind-address=127.0.0.1",
                    f"--secure-port={_free_ports(1)[0]}",
                    "--v=1",
                ],
            )
            current_log = "node/kubelet.log"
            plane.node = Node(
                plane,
                workdir / "node",
                node_bins,
                options=node if isinstance(node, NodeOptions) else NodeOptions(),
                network=network,
            )
            plane.node.start(timeout=max(30.0, deadline - time.monotonic() + 60))
    except BaseException as exc:
        tail = (
            _tail((workdir / current_log).read_text(errors="replace"))
            if (workdir / current_log).is_file()
            else "(no log)"
        )
        plane.stop()
        if isinstance(exc, ControlPlaneError):
            raise ControlPlaneError(f"{exc}\n--- tail of {workdir / current_log} ---\n{tail}") from None
        raise
    if detach:
        _DETACHED.extend(plane._procs.values())
    return plane


# --- dev cluster (detached, shared between CLI invocations) --------------------------------------


def default_dev_dir() -> Path:
    """``$JWT_TRUST_DEV_DIR`` or ``~/.cache/jwt-trust/dev-cluster``."""
    configured = os.environ.get("JWT_TRUST_DEV_DIR")
    return Path(configured) if configured else Path.home() / ".cache" / "jwt-trust" / "dev-cluster"


def dev_up(state_dir: Path) -> ControlPlane:
    """Start a detached dev cluster (or reuse the healthy one already described in ``state_dir``)."""
    state_dir = Path(state_dir)
    existing = _load_state(state_dir)
    if existing is not None:
        if existing.healthy():
            return existing
        existing.stop()
    plane = start(state_dir / "cluster", detach=True)
    state = {
        "version": 1,
        "workdir": str(plane.workdir),
        "bin_dir": str(plane.bin_dir),
        "api_port": plane.api_port,
        "api_host": plane.api_host,
        "kubeconfig": str(plane.kubeconfig),
        "ca_file": str(plane.ca_file),
        "pids": plane.pids,
    }
    state_dir.mkdir(parents=True, exist_ok=True)
    tmp = state_dir / "state.json.tmp"
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    tmp.replace(state_dir / "state.json")
    return plane


def dev_env(state_dir: Path) -> str:
    """Shell lines that point kubectl/helm at the dev cluster (``eval "$(jwt-trust-dev-cluster env)"``)."""
    plane = _load_state(Path(state_dir))
    if plane is None:
        raise ControlPlaneError(f"no dev cluster state in {state_dir}; run dev up first")
    return (
        f"export KUBECONFIG={shlex.quote(str(plane.kubeconfig))}\n"
        f"export PATH={shlex.quote(str(plane.bin_dir))}:$PATH\n"
    )


def dev_down(state_dir: Path) -> None:
    """Stop the dev cluster described in ``state_dir`` (if any) and forget it."""
    state_dir = Path(state_dir)
    plane = _load_state(state_dir)
    if plane is not None:
        plane.stop()
    (state_dir / "state.json").unlink(missing_ok=True)


def _load_state(state_dir: Path) -> ControlPlane | None:
    path = state_dir / "state.json"
    if not path.is_file():
        return None
    try:
        state: dict[str, Any] = json.loads(path.read_text())
        bin_dir = Path(state["bin_dir"])
        # A recorded pid may have been reused by an unrelated process after a reboot: only keep
        # pids whose command line still names one of our binaries.
        pids = [int(p) for p in state["pids"] if _runs_binary_from(int(p), bin_dir)]
        return ControlPlane(
            workdir=Path(state["workdir"]),
            bin_dir=bin_dir,
            api_port=int(state["api_port"]),
            api_host=str(state.get("api_host", "127.0.0.1")),
            kubeconfig=Path(state["kubeconfig"]),
            ca_file=Path(state["ca_file"]),
            pids=pids,
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise ControlPlaneError(f"unreadable dev cluster state {path}: {exc}") from None


# --- processes --------------------------------------------------------------------------------------


def _spawn(plane: ControlPlane, name: str, argv: list[str]) -> None:
    with (plane.workdir / f"{name}.log").open("ab") as log:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=plane.workdir,
            start_new_session=True,  # its own process group, so stop() can signal the whole group
        )
    previous = plane._argv.get(name)
    if previous is not None and previous[0] in plane.pids:
        plane.pids[plane.pids.index(previous[0])] = proc.pid  # a restart keeps the start order
    else:
        plane.pids.append(proc.pid)
    plane._procs[proc.pid] = proc
    plane._argv[name] = (proc.pid, argv)


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # The state letter follows the parenthesised command name; a zombie has already exited.
    return stat.rpartition(")")[2].split()[0] != "Z"


def _runs_binary_from(pid: int, bin_dir: Path) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return cmdline.startswith(str(bin_dir).encode() + b"/")


def _terminate_group(pid: int, proc: subprocess.Popen[bytes] | None, grace: float = 20) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            pass
        except PermissionError:
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if proc is not None:
                if proc.poll() is not None:
                    break
            elif not _alive(pid):
                break
            time.sleep(0.1)
        else:
            continue
        break
    if proc is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)


def _wait_for(check: Any, deadline: float, plane: ControlPlane, what: str) -> None:
    while True:
        dead = [pid for pid in plane.pids if plane._procs[pid].poll() is not None]
        if dead:
            raise ControlPlaneError(f"{what}: a control-plane process exited during start-up")
        if check():
            return
        if time.monotonic() > deadline:
            raise ControlPlaneError(f"{what} not ready before the start-up timeout")
        time.sleep(0.25)


def _free_ports(count: int) -> list[int]:
    # Hold all sockets open until every port is chosen, so the same port is not handed out twice.
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _http_ok(url: str, context: ssl.SSLContext | None = None) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as response:  # noqa: S310
            return bool(response.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def _readyz(api_host: str, api_port: int, ca_file: Path) -> bool:
    context = ssl.create_default_context(cafile=str(ca_file))
    return _http_ok(f"https://{api_host}:{api_port}/readyz", context)


def _tail(text: str) -> str:
    return "\n".join(text.splitlines()[-_LOG_TAIL_LINES:])


# --- PKI and kubeconfig ---------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _write_private(path: Path, data: bytes) -> None:
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _write_pki(pki_dir: Path, extra_ips: Sequence[str] = ()) -> dict[str, Path]:
    """CA, apiserver serving cert, admin client cert (O=system:masters) and the SA token signing key."""
    pki_dir.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    one_year = now + datetime.timedelta(days=365)

    def key_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "jwt-trust-test-ca")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(
        subject: x509.Name, usage: x509.ObjectIdentifier, sans: list[x509.GeneralName] | None
    ) -> tuple[bytes, bytes]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(one_year)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
            )
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        return cert.public_bytes(serialization.Encoding.PEM), key_pem(key)

    serving_sans: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.DNSName("kubernetes"),
        x509.DNSName("kubernetes.default"),
        x509.DNSName("kubernetes.default.svc"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("10.0.0.1")),
        *(x509.IPAddress(ipaddress.ip_address(ip)) for ip in extra_ips if ip != "127.0.0.1"),
    ]
    apiserver_crt, apiserver_key = leaf(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]),
        ExtendedKeyUsageOID.SERVER_AUTH,
        serving_sans,
    )
    admin_crt, admin_key = leaf(
        x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:masters"),
                x509.NameAttribute(NameOID.COMMON_NAME, "admin"),
            ]
        ),
        ExtendedKeyUsageOID.CLIENT_AUTH,
        None,
    )
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    paths = {
        name: pki_dir / name
        for name in (
            "ca.crt",
            "ca.key",
            "apiserver.crt",
            "apiserver.key",
            "admin.crt",
            "admin.key",
            "sa.key",
            "sa.pub",
        )
    }
    paths["ca.crt"].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    _write_private(paths["ca.key"], key_pem(ca_key))
    paths["apiserver.crt"].write_bytes(apiserver_crt)
    _write_private(paths["apiserver.key"], apiserver_key)
    paths["admin.crt"].write_bytes(admin_crt)
    _write_private(paths["admin.key"], admin_key)
    _write_private(paths["sa.key"], key_pem(sa_key))
    paths["sa.pub"].write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return paths


def _write_kubeconfig(
    path: Path,
    *,
    server: str,
    ca_pem: bytes,
    user_name: str,
    user: dict[str, str],
    namespace: str | None,
) -> None:
    # JSON is valid YAML, so kubectl, helm and kopf read this without a YAML library here.
    context: dict[str, str] = {"cluster": "jwt-trust-test", "user": user_name}
    if namespace is not None:
        context["namespace"] = namespace
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "jwt-trust-test",
                "cluster": {"server": server, "certificate-authority-data": _b64(ca_pem)},
            }
        ],
        "users": [{"name": user_name, "user": user}],
        "contexts": [{"name": "jwt-trust-test", "context": context}],
        "current-context": "jwt-trust-test",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_private(path, (json.dumps(config, indent=2) + "\n").encode())
