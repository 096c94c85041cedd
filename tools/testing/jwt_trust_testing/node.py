"""One kubelet node for the local control plane: containerd + runc, a CNI bridge, kube-proxy, the kubelet.

Why: the operator's image, its Helm chart and a workload that mounts the projected ConfigMap can only be
proven on a node that really runs pods: Pod Security admission, probes, kopf peering between two
replicas, and the kubelet's own delay between a ConfigMap write and the files in the pod.

Layout (everything scratch lives under ``workdir``, on the host's network only through one bridge):
- the bridge :data:`BRIDGE` with the gateway address :data:`GATEWAY` of the pod subnet :data:`POD_SUBNET`
  is created *before* the API server, which binds and advertises that address (so pods reach it
  through the ``kubernetes`` Service, which kube-proxy maps onto it), see :func:`prepare_network`;
- containerd (Debian's, with runc) with its root, state, socket, CNI configuration and IPAM state in
  ``workdir/containerd``; the sandbox image is the ``pause`` binary built by
  ``tools/k8s-bins/build-node.sh``, imported from a docker-archive tar (nothing is ever pulled);
- CNI: Debian's plugins in ``/usr/lib/cni``: ``bridge`` with ``host-local`` IPAM (no masquerade: pods
  only reach the host), and ``loopback``, which containerd runs for every sandbox;
- kube-proxy in iptables mode, told to leave conntrack and localhost sysctls alone;
- a cluster DNS (:class:`~jwt_trust_testing.dns.ClusterDNS`, a thread of this process) on the gateway
  address, answering Service names from the API: the kubelet's ``clusterDNS``;
- the kubelet, root dir and pod logs in ``workdir/kubelet``, registered with the gateway as its node
  IP; it accepts the API server's client certificate (``kubectl logs``/``exec``).

Guarantees:
- one node per machine at a time (iptables chains and the bridge are host-wide): a lock file is held
  from :func:`prepare_network` until :func:`release_network`;
- :meth:`Node.stop` cordons the node, deletes its pods through the API and waits for the kubelet to
  tear them down (containers, sandboxes, network namespaces, volumes); then it stops every process,
  removes what a crash could have left (tasks, shims, mounts under ``workdir``, kube-proxy's rules,
  the kubelet's cgroups) and puts back the kernel settings the kubelet, kube-proxy and the bridge
  plugin change; :func:`leftovers` lists anything still there, and tests assert it is empty.

Needs root and the Debian packages ``containerd runc containernetworking-plugins iptables conntrack``
(``tools/node/packages.sh``). Standard library only (plus :mod:`jwt_trust_testing.cluster`).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from .cluster import ControlPlane
    from .dns import ClusterDNS

__all__ = [
    "BRIDGE",
    "GATEWAY",
    "NODE_NAME",
    "POD_SUBNET",
    "Node",
    "NodeError",
    "NodeOptions",
    "build_node_binaries",
    "build_operator_image",
    "leftovers",
    "missing_requirements",
    "prepare_network",
    "release_network",
]

BRIDGE = "jwt-trust0"
POD_SUBNET = "10.244.77.0/24"
GATEWAY = "10.244.77.1"
NODE_NAME = "jwt-trust-node"
CNI_BIN_DIR = Path("/usr/lib/cni")
PAUSE_IMAGE = "localhost/jwt-trust-pause:1"
_LOCK_FILE = Path("/run/lock/jwt-trust-node.lock")
_BUILD_NODE = Path("tools/k8s-bins/build-node.sh")
_BUILD_IMAGE = Path("tools/image/build.sh")
_REQUIRED_COMMANDS = ("containerd", "ctr", "runc", "iptables-save", "iptables", "conntrack", "ip")
# Kernel settings the kubelet (kernel and vm ones), the bridge plugin (ip_forward) or kube-proxy may
# change: read before the node starts and written back after it stops.
_SYSCTLS = (
    "net/ipv4/ip_forward",
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
    "net/ipv4/conf/all/route_localnet",
)
_CGROUP_ROOT = Path("/sys/fs/cgroup")
_KUBELET_CGROUP = "kubepods"
_IPTABLES_PREFIXES = ("KUBE-", "CNI-")
# Host directories containerd, libcni and the kubelet create even when told to work elsewhere (shim
# sockets, the CNI result cache, the kubelet's device-plugin socket, whose path is fixed): removed after
# the node stops when they did not exist before it started and hold nothing but sockets and directories.
_HOST_DIRS = (Path("/run/containerd"), Path("/var/lib/cni"), Path("/var/lib/kubelet"))


class NodeError(RuntimeError):
    """The node could not be built, started or stopped cleanly."""


@dataclass(frozen=True)
class NodeOptions:
    """How the kubelet refreshes mounted ConfigMaps and Secrets.

    ``sync_frequency`` (KubeletConfiguration ``syncFrequency``, the kubelet's default is 1m) bounds how
    long a changed ConfigMap waits before the pod's next sync rewrites its files;
    ``change_detection`` is ``configMapAndSecretChangeDetectionStrategy`` (``Watch``, the default,
    ``Cache`` or ``Get``). ``None`` leaves the kubelet's default.
    """

    sync_frequency: str | None = None
    change_detection: str | None = None


# --- requirements and builds ----------------------------------------------------------------------


def missing_requirements() -> list[str]:
    """Why a node cannot run here (empty when it can): not root, or a command missing."""
    problems = [] if os.geteuid() == 0 else ["not root"]
    problems += [f"command {c!r} missing" for c in _REQUIRED_COMMANDS if shutil.which(c) is None]
    if not (CNI_BIN_DIR / "bridge").is_file():
        problems.append(f"CNI plugins missing in {CNI_BIN_DIR} (containernetworking-plugins)")
    return problems


def _run_script(repo_root: Path, script: Path, what: str) -> Path:
    result = subprocess.run(["bash", str(repo_root / script)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise NodeError(f"{script} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    lines = result.stdout.strip().splitlines()
    if not lines or not Path(lines[-1]).exists():
        raise NodeError(f"{script} printed no {what}: {result.stdout.strip()!r}")
    return Path(lines[-1])


def build_node_binaries(repo_root: Path) -> Path:
    """``tools/k8s-bins/build-node.sh`` (instant when cached): kubelet, kube-proxy, kube-scheduler, pause."""
    return _run_script(repo_root, _BUILD_NODE, "binary directory")


def build_operator_image(repo_root: Path) -> Path:
    """``tools/image/build.sh`` (instant when cached): the operator image as a docker-archive tar."""
    return _run_script(repo_root, _BUILD_IMAGE, "image tar")


def pause_image_tar(pause_binary: Path, path: Path) -> Path:
    """A docker-archive tar of one layer holding ``/pause``, named :data:`PAUSE_IMAGE`."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        info = tar.gettarinfo(str(pause_binary), arcname="pause")
        info.mode, info.uid, info.gid, info.uname, info.gname, info.mtime = 0o755, 0, 0, "", "", 0
        with pause_binary.open("rb") as f:
            tar.addfile(info, f)
    layer_bytes = layer.getvalue()
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": ["/pause"], "User": "65535:65535"},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(layer_bytes).hexdigest()]},
    }
    members = {
        "layer.tar": layer_bytes,
        "config.json": json.dumps(config).encode(),
        "manifest.json": json.dumps(
            [{"Config": "config.json", "RepoTags": [PAUSE_IMAGE], "Layers": ["layer.tar"]}]
        ).encode(),
    }
    with tarfile.open(path, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


# --- the network (before the API server) and the machine-wide lock -------------------------------


@dataclass
class Network:
    """The bridge, the lock that makes this node the machine's only one, and the host state to restore."""

    lock: IO[bytes]
    sysctls: dict[str, str]
    iptables_before: dict[str, set[str]]
    rules_before: set[str] = field(default_factory=set)
    new_host_dirs: tuple[Path, ...] = ()


def prepare_network(lock_timeout: float = 900) -> Network:
    """Take the machine-wide node lock (waiting up to ``lock_timeout`` for another node to stop), record
    the host state, create the bridge with the gateway."""
    problems = missing_requirements()
    if problems:
        raise NodeError("a node cannot run here: " + "; ".join(problems))
    _LOCK_FILE.parent.mkdir(parents=True, exist_ok=True)
    lock = _LOCK_FILE.open("wb")
    deadline = time.monotonic() + lock_timeout
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() > deadline:
                lock.close()
                raise NodeError(
                    f"another local node has run on this machine for {lock_timeout:.0f}s (lock {_LOCK_FILE})"
                ) from None
            time.sleep(1)
    try:
        sysctls = {name: _read_sysctl(name) for name in _SYSCTLS if _sysctl_path(name).exists()}
        before = _iptables_chains()
        rules = _iptables_rules()
        new_dirs = tuple(path for path in _HOST_DIRS if not path.exists())
        # A bridge left by a killed run (the lock is free, so nothing uses it) is replaced.
        _ip("link", "del", BRIDGE, check=False)
        _ip("link", "add", BRIDGE, "type", "bridge")
        _ip("addr", "add", f"{GATEWAY}/{POD_SUBNET.split('/')[1]}", "dev", BRIDGE)
        _ip("link", "set", BRIDGE, "up")
    except BaseException:
        lock.close()
        raise
    return Network(
        lock=lock, sysctls=sysctls, iptables_before=before, rules_before=rules, new_host_dirs=new_dirs
    )


def release_network(network: Network) -> None:
    """Delete the bridge, drop leftover KUBE-/CNI- chains, restore the kernel settings, free the lock."""
    _ip("link", "del", BRIDGE, check=False)
    _remove_new_chains(network.iptables_before)
    for path in network.new_host_dirs:
        _remove_empty_tree(path)
    for name, value in network.sysctls.items():
        with contextlib.suppress(OSError):
            if _read_sysctl(name) != value:
                _sysctl_path(name).write_text(value + "\n")
    network.lock.close()


def _sysctl_path(name: str) -> Path:
    return Path("/proc/sys") / name


def _read_sysctl(name: str) -> str:
    return _sysctl_path(name).read_text().strip()


def _ip(*args: str, check: bool = True) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise NodeError(f"ip {' '.join(args)}: {result.stderr.strip()}")


def _iptables_chains() -> dict[str, set[str]]:
    """``{"<family> <table>": {chain, ...}}`` for IPv4 and IPv6, from iptables-save."""
    chains: dict[str, set[str]] = {}
    for family, command in (("ipv4", "iptables-save"), ("ipv6", "ip6tables-save")):
        if shutil.which(command) is None:
            continue
        out = subprocess.run([command], capture_output=True, text=True, check=False).stdout
        table = ""
        for line in out.splitlines():
            if line.startswith("*"):
                table = line[1:]
                chains.setdefault(f"{family} {table}", set())
            elif line.startswith(":"):
                chains.setdefault(f"{family} {table}", set()).add(line[1:].split()[0])
    return chains


def _iptables_rules() -> set[str]:
    """Every rule (``-A`` line) of IPv4 and IPv6, prefixed with its family and table."""
    rules = set()
    for family, command in (("ipv4", "iptables-save"), ("ipv6", "ip6tables-save")):
        if shutil.which(command) is None:
            continue
        table = ""
        for line in subprocess.run(
            [command], capture_output=True, text=True, check=False
        ).stdout.splitlines():
            if line.startswith("*"):
                table = line[1:]
            elif line.startswith("-A "):
                rules.add(f"{family} {table} {line}")
    return rules


def _remove_empty_tree(path: Path) -> None:
    """Remove ``path`` if it holds only directories and sockets (the kubelet's and the shims')."""
    if not path.is_dir():
        return
    for current, _, files in sorted(os.walk(path), key=lambda item: len(item[0]), reverse=True):
        for name in files:
            entry = Path(current, name)
            if stat.S_ISSOCK(entry.lstat().st_mode):
                entry.unlink()
        with contextlib.suppress(OSError):
            Path(current).rmdir()


def _new_chains(before: dict[str, set[str]]) -> list[str]:
    now = _iptables_chains()
    return sorted(
        f"{key} {chain}"
        for key, chains in now.items()
        for chain in chains - before.get(key, set())
        if chain.startswith(_IPTABLES_PREFIXES)
    )


def _remove_new_chains(before: dict[str, set[str]]) -> None:
    """Flush and delete KUBE-/CNI- chains that were not there before, with the rules jumping to them."""
    for _ in range(2):
        leftover = _new_chains(before)
        if not leftover:
            return
        for entry in leftover:
            family, table, chain = entry.split()
            command = "iptables" if family == "ipv4" else "ip6tables"
            saved = subprocess.run(
                [f"{command}-save", "-t", table], capture_output=True, text=True, check=False
            ).stdout
            for line in saved.splitlines():
                if line.startswith("-A ") and f"-j {chain}" in line:
                    args = line.split()
                    args[0] = "-D"
                    subprocess.run([command, "-t", table, *args], capture_output=True, check=False)
            subprocess.run([command, "-t", table, "-F", chain], capture_output=True, check=False)
            subprocess.run([command, "-t", table, "-X", chain], capture_output=True, check=False)


# --- the node ---------------------------------------------------------------------------------------


@dataclass
class Node:
    """containerd, kube-proxy and the kubelet of one node, started by :meth:`start` and stopped by
    :meth:`stop` (which the control plane's ``stop`` calls first)."""

    plane: ControlPlane
    workdir: Path
    bin_dir: Path
    options: NodeOptions = field(default_factory=NodeOptions)
    network: Network | None = None
    kubelet_port: int = 0
    dns: ClusterDNS | None = None
    _procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict, repr=False)

    @property
    def socket(self) -> Path:
        return self.workdir / "containerd" / "containerd.sock"

    @property
    def kubelet_root(self) -> Path:
        return self.workdir / "kubelet"

    def configmap_volume(self, pod_uid: str, volume: str) -> Path:
        """Where the kubelet keeps a pod's ConfigMap volume on the host (what the pod sees)."""
        return self.kubelet_root / "pods" / pod_uid / "volumes" / "kubernetes.io~configmap" / volume

    def ctr(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["ctr", "--address", str(self.socket), "--namespace", "k8s.io", *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise NodeError(f"ctr {' '.join(args)}: {result.stderr.strip()}")
        return result

    def import_image(self, tar: Path) -> None:
        """Load a docker-archive tar into the node's containerd (for ``imagePullPolicy: Never``)."""
        self.ctr("images", "import", "--no-unpack=false", str(tar))

    def logs(self, name: str) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace") if path.is_file() else ""

    # --- start ---

    def start(self, timeout: float = 120) -> None:
        from .cluster import _free_ports  # noqa: PLC0415 - the modules import each other

        deadline = time.monotonic() + timeout
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.kubelet_port, healthz_port, proxy_healthz, proxy_metrics = _free_ports(4)
        try:
            self._start_containerd(deadline)
            self.import_image(pause_image_tar(self.bin_dir / "pause", self.workdir / "pause.tar"))
            self._start_kube_proxy(proxy_healthz, proxy_metrics)
            from .dns import ClusterDNS  # noqa: PLC0415 - the modules import each other

            self.dns = ClusterDNS(self.plane, GATEWAY)
            self.dns.start()
            self._start_kubelet(healthz_port)
            self._wait(self._ready, deadline, "the node Ready and untainted")
        except BaseException:
            self.stop()
            raise

    def _spawn(self, name: str, argv: list[str]) -> None:
        with (self.workdir / f"{name}.log").open("ab") as log:
            self._procs[name] = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,
            )

    def _wait(self, check: object, deadline: float, what: str) -> None:
        assert callable(check)
        while not check():
            dead = [name for name, proc in self._procs.items() if proc.poll() is not None]
            if dead:
                raise NodeError(f"{what}: {dead[0]} exited:\n{self.logs(dead[0])[-3000:]}")
            if time.monotonic() > deadline:
                tails = "\n".join(f"--- {n} ---\n{self.logs(n)[-1500:]}" for n in self._procs)
                raise NodeError(f"{what}: not before the start-up timeout\n{tails}")
            time.sleep(0.25)

    def _start_containerd(self, deadline: float) -> None:
        base = self.workdir / "containerd"
        cni_conf = base / "net.d"
        cni_conf.mkdir(parents=True, exist_ok=True)
        (cni_conf / "10-jwt-trust.conflist").write_text(
            json.dumps(
                {
                    "cniVersion": "1.0.0",
                    "name": "jwt-trust",
                    "plugins": [
                        {
                            "type": "bridge",
                            "bridge": BRIDGE,
                            "isGateway": True,
                            "ipMasq": False,
                            "ipam": {
                                "type": "host-local",
                                "ranges": [[{"subnet": POD_SUBNET, "gateway": GATEWAY}]],
                                "routes": [{"dst": "0.0.0.0/0"}],
                                "dataDir": str(base / "ipam"),
                            },
                        }
                    ],
                },
                indent=2,
            )
        )
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        config = f"""version = 2
root = "{base / "root"}"
state = "{base / "state"}"
# The opt plugin would install into /opt/containerd; nothing here needs it.
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "{self.socket}"
[ttrpc]
  address = "{self.socket}.ttrpc"
[metrics]
  address = ""
[{cri}]
  sandbox_image = "{PAUSE_IMAGE}"
  # Lowering a container's OOM score below containerd's own is refused on this kind of host.
  restrict_oom_score_adj = true
  # Network namespaces under the state directory, not /var/run/netns.
  netns_mounts_under_state_dir = true
  enable_selinux = false
[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"
[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
[{cri}.containerd.runtimes.runc.options]
  BinaryName = "{shutil.which("runc")}"
  Root = "{base / "runc"}"
  SystemdCgroup = false
[{cri}.cni]
  bin_dir = "{CNI_BIN_DIR}"
  conf_dir = "{cni_conf}"
"""
        (base / "config.toml").write_text(config)
        self._spawn("containerd", ["containerd", "--config", str(base / "config.toml")])
        self._wait(
            lambda: self.socket.exists() and self.ctr("version", check=False, timeout=10).returncode == 0,
            deadline,
            "containerd",
        )

    def _start_kube_proxy(self, healthz_port: int, metrics_port: int) -> None:
        config = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "mode": "iptables",
            "clientConnection": {"kubeconfig": str(self.plane.kubeconfig)},
            "hostnameOverride": NODE_NAME,
            "bindAddress": GATEWAY,
            "clusterCIDR": POD_SUBNET,
            "healthzBindAddress": f"127.0.0.1:{healthz_port}",
            "metricsBindAddress": f"127.0.0.1:{metrics_port}",
            # 0: leave the host's conntrack table size and timeouts as they are.
            "conntrack": {
                "maxPerCore": 0,
                "min": 0,
                "tcpEstablishedTimeout": "0s",
                "tcpCloseWaitTimeout": "0s",
            },
            # No NodePorts on 127.0.0.1: kube-proxy would set route_localnet on the host.
            "iptables": {"localhostNodePorts": False},
        }
        path = self.workdir / "kube-proxy.json"
        path.write_text(json.dumps(config, indent=2))
        self._spawn("kube-proxy", [str(self.bin_dir / "kube-proxy"), f"--config={path}", "--v=1"])

    def _kubelet_config(self, healthz_port: int) -> dict[str, object]:
        config: dict[str, object] = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            # cgroup v1 (hybrid) here; the kubelet refuses v1 unless told otherwise.
            "failCgroupV1": False,
            "cgroupDriver": "cgroupfs",
            "containerRuntimeEndpoint": f"unix://{self.socket}",
            "address": GATEWAY,
            "port": self.kubelet_port,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": healthz_port,
            "podLogsDir": str(self.workdir / "pod-logs"),
            # The API server's client certificate (for logs and exec) is signed by the cluster CA.
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": False},
                "x509": {"clientCAFile": str(self.plane.ca_file)},
            },
            "authorization": {"mode": "AlwaysAllow"},
            "clusterDNS": [GATEWAY],
            "clusterDomain": "cluster.local",
            "failSwapOn": False,
            "resolvConf": "/etc/resolv.conf",
            # The node shares the disk with everything else on the machine: never evict or GC for it.
            "evictionHard": {"memory.available": "1Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "registerNode": True,
        }
        if self.options.sync_frequency is not None:
            config["syncFrequency"] = self.options.sync_frequency
        if self.options.change_detection is not None:
            config["configMapAndSecretChangeDetectionStrategy"] = self.options.change_detection
        return config

    def _start_kubelet(self, healthz_port: int) -> None:
        self.kubelet_root.mkdir(parents=True, exist_ok=True)
        path = self.workdir / "kubelet.json"
        path.write_text(json.dumps(self._kubelet_config(healthz_port), indent=2))
        self._spawn(
            "kubelet",
            [
                str(self.bin_dir / "kubelet"),
                f"--config={path}",
                f"--kubeconfig={self.plane.kubeconfig}",
                f"--root-dir={self.kubelet_root}",
                f"--cert-dir={self.kubelet_root / 'pki'}",
                f"--hostname-override={NODE_NAME}",
                f"--node-ip={GATEWAY}",
                "--v=1",
            ],
        )

    def _ready(self) -> bool:
        result = self.plane.kubectl("get", "node", NODE_NAME, "-o", "json", check=False)
        if result.returncode != 0:
            return False
        node = json.loads(result.stdout)
        ready = any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in node.get("status", {}).get("conditions", [])
        )
        return ready and not node.get("spec", {}).get("taints")

    # --- stop ---

    def stop(self) -> None:
        """Drain through the kubelet, stop every process, remove whatever a crash left behind."""
        if "kubelet" in self._procs and self._procs["kubelet"].poll() is None:
            with contextlib.suppress(Exception):
                self._drain()
        for name in ("kubelet", "kube-proxy"):
            self._terminate(name)
        if (self.bin_dir / "kube-proxy").is_file() and "kube-proxy" in self._procs:
            subprocess.run(
                [
                    str(self.bin_dir / "kube-proxy"),
                    "--cleanup",
                    f"--config={self.workdir / 'kube-proxy.json'}",
                ],
                capture_output=True,
                check=False,
                timeout=60,
            )
        if "containerd" in self._procs and self._procs["containerd"].poll() is None:
            with contextlib.suppress(Exception):
                self._kill_tasks()
        self._terminate("containerd")
        if self.dns is not None:
            self.dns.stop()
            self.dns = None
        self._kill_shims()
        _unmount_under(self.workdir)
        _remove_cgroups()
        self._procs.clear()

    def _drain(self, timeout: float = 90) -> None:
        """Cordon the node and delete its pods; the kubelet stops their containers and sandboxes (the
        CNI plugins run, the network namespaces go) and unmounts their volumes before the pods go."""
        kubectl = self.plane.kubectl
        kubectl("cordon", NODE_NAME, check=False)
        selector = f"spec.nodeName={NODE_NAME}"
        kubectl(
            "delete",
            "pods",
            "-A",
            "--field-selector",
            selector,
            "--grace-period=5",
            "--wait=false",
            check=False,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            listed = kubectl("get", "pods", "-A", "--field-selector", selector, "-o", "name", check=False)
            if listed.returncode == 0 and not listed.stdout.strip() and not self._running_tasks():
                return
            time.sleep(0.5)

    def _running_tasks(self) -> list[str]:
        result = self.ctr("tasks", "ls", "--quiet", check=False, timeout=20)
        return result.stdout.split()

    def _kill_tasks(self) -> None:
        for task in self._running_tasks():
            self.ctr("tasks", "kill", "--signal", "SIGKILL", task, check=False, timeout=20)
        deadline = time.monotonic() + 20
        for task in self._running_tasks():
            while time.monotonic() < deadline:
                if self.ctr("tasks", "delete", "--force", task, check=False, timeout=20).returncode == 0:
                    break
                time.sleep(0.2)

    def _terminate(self, name: str) -> None:
        from .cluster import _terminate_group  # noqa: PLC0415 - the modules import each other

        proc = self._procs.get(name)
        if proc is not None:
            _terminate_group(proc.pid, proc)

    def _kill_shims(self) -> None:
        """containerd's shims outlive it on purpose (they are not in its process group): a shim of this
        node names its socket on the command line; any still running is killed by pid."""
        for pid in _pids_mentioning(str(self.socket)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, 9)


# --- checking that nothing is left ----------------------------------------------------------------


def _pids_mentioning(text: str) -> list[int]:
    pids = []
    needle = text.encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if needle in (entry / "cmdline").read_bytes():
                pids.append(int(entry.name))
    return pids


def _mounts_under(root: Path) -> list[str]:
    prefix = str(root.resolve())
    mounts = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point == prefix or point.startswith(prefix + "/"):
            mounts.append(point)
    return mounts


def _unmount_under(root: Path) -> None:
    for _ in range(3):
        mounts = _mounts_under(root)
        if not mounts:
            return
        for point in sorted(mounts, key=len, reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def _kubelet_cgroups() -> list[Path]:
    found = []
    if _CGROUP_ROOT.is_dir():
        for hierarchy in _CGROUP_ROOT.iterdir():
            top = hierarchy / _KUBELET_CGROUP
            if top.is_dir():
                found.append(top)
    return found


def _remove_cgroups() -> None:
    """rmdir the kubelet's pod cgroups, deepest first (empty once every container has gone)."""
    for top in _kubelet_cgroups():
        for current, dirs, _ in sorted(os.walk(top), key=lambda item: len(item[0]), reverse=True):
            del dirs
            with contextlib.suppress(OSError):
                Path(current).rmdir()


def leftovers(workdir: Path, network: Network | None) -> list[str]:
    """What a stopped node left on the machine: processes, mounts, the bridge, iptables chains, cgroups."""
    found = [f"process {pid}" for pid in _pids_mentioning(str(workdir))]
    found += [f"mount {point}" for point in _mounts_under(workdir)]
    if Path("/sys/class/net", BRIDGE).exists():
        found.append(f"bridge {BRIDGE}")
    if network is not None:
        found += [f"iptables chain {chain}" for chain in _new_chains(network.iptables_before)]
        found += [f"iptables rule {rule}" for rule in sorted(_iptables_rules() - network.rules_before)]
        found += [f"directory {path}" for path in network.new_host_dirs if path.exists()]
        found += [
            f"sysctl {name} is {_read_sysctl(name)}, was {value}"
            for name, value in network.sysctls.items()
            if _read_sysctl(name) != value
        ]
    found += [f"cgroup {path}" for path in _kubelet_cgroups()]
    return found
