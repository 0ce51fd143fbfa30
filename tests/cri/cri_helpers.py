"""A private containerd (Debian's, 1.6) with a `dockyard` runtime handler, driven
through the CRI v1 gRPC API by a client of our own (cri_subset.proto, compiled
at test time with grpcio-tools).

Everything containerd makes lives under one directory of the test's
(root, state, sockets, CNI config and IPAM data, our runtime's --root, the
container logs), its containers' cgroups under a parent of the test's, its
CNI bridge has a name and subnet of the test's: ``Containerd.close()`` stops
what is still running and removes all of it, and ``leftovers()`` says what of
it is still there (the tests assert it is nothing).
"""

from __future__ import annotations

import glob
import gzip
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
CNI_BIN = "/usr/lib/cni"
IMAGE = "dockyard.test/busybox:cri"


def have_containerd() -> str | None:
    """Why the CRI tests cannot run here, or None."""
    for tool in ("containerd", "ctr"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install containerd)"
    if not os.path.exists(os.path.join(CNI_BIN, "bridge")):
        return "containernetworking-plugins is not installed"
    try:
        import grpc  # noqa: F401
        import grpc_tools  # noqa: F401
    except ImportError:
        return "grpcio and grpcio-tools are not installed (pip install '.[test]')"
    return None


def compile_proto(out: Path):
    """The generated modules (messages, stubs) for cri_subset.proto."""
    from grpc_tools import protoc
    import grpc_tools
    out.mkdir(parents=True, exist_ok=True)
    include = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    rc = protoc.main(["protoc", f"-I{HERE}", f"-I{include}", f"--python_out={out}",
                      f"--grpc_python_out={out}", str(HERE / "cri_subset.proto")])
    if rc != 0:
        raise RuntimeError("protoc failed on cri_subset.proto")
    sys.path.insert(0, str(out))
    import cri_subset_pb2
    import cri_subset_pb2_grpc
    return cri_subset_pb2, cri_subset_pb2_grpc


# -- the image: busybox, `sleep` as its command (the sandbox's too) ----------------

def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def image_tar(rootfs: Path, name: str = IMAGE) -> bytes:
    """An OCI image layout tar (what `ctr images import` reads) of ``rootfs``."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for dirpath, dirnames, filenames in os.walk(rootfs):
            dirnames.sort()
            for n in sorted(dirnames) + sorted(filenames):
                full = os.path.join(dirpath, n)
                ti = tf.gettarinfo(full, arcname=os.path.relpath(full, rootfs))
                ti.mtime, ti.uid, ti.gid, ti.uname, ti.gname = 0, 0, 0, "", ""
                if ti.isreg():
                    with open(full, "rb") as f:
                        tf.addfile(ti, f)
                else:
                    tf.addfile(ti)
    layer_raw = raw.getvalue()
    layer = gzip.compress(layer_raw, compresslevel=1, mtime=0)
    config = json.dumps({
        "architecture": {"x86_64": "amd64", "aarch64": "arm64"}[os.uname().machine],
        "os": "linux",
        "config": {"Cmd": ["sleep", "2147483647"], "Env": ["PATH=/bin:/usr/bin:/sbin"]},
        "rootfs": {"type": "layers", "diff_ids": [_sha(layer_raw)]},
    }).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": _sha(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": _sha(layer), "size": len(layer)}],
    }).encode()
    index = json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": _sha(manifest),
        "size": len(manifest), "annotations": {"io.containerd.image.name": name,
                                               "org.opencontainers.image.ref.name": "cri"}}]})
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tf:
        def add(arc: str, data: bytes) -> None:
            ti = tarfile.TarInfo(arc)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
        add("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        add("index.json", index.encode())
        for blob in (layer, config, manifest):
            add("blobs/sha256/" + _sha(blob).split(":")[1], blob)
    return out.getvalue()


# -- containerd ------------------------------------------------------------------

def _config(top: Path, launcher: str, runc_root: Path, bridge: str, subnet: str) -> str:
    cni_conf = top / "cni"
    cni_conf.mkdir()
    (cni_conf / "10-dyk.conflist").write_text(json.dumps({
        "cniVersion": "0.4.0", "name": f"dyk-{bridge}",
        "plugins": [{"type": "bridge", "bridge": bridge, "isGateway": True, "ipMasq": False,
                     "ipam": {"type": "host-local", "subnet": subnet,
                              "dataDir": str(top / "ipam")}},
                    {"type": "loopback"}]}))
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return f"""version = 2
root = "{top}/root"
state = "{top}/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
                    "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper",
                    "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "{top}/containerd.sock"
[ttrpc]
  address = "{top}/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "{top}/opt"
[{cri}]
  sandbox_image = "{IMAGE}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  disable_apparmor = true
  restrict_oom_score_adj = true   # this kind of host (a container itself) has no CAP_SYS_RESOURCE
  enable_selinux = false
[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"
[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
[{cri}.containerd.runtimes.runc.options]
  Root = "{runc_root}-runc"
[{cri}.containerd.runtimes.dockyard]
  runtime_type = "io.containerd.runc.v2"
[{cri}.containerd.runtimes.dockyard.options]
  BinaryName = "{launcher}"
  Root = "{runc_root}"
[{cri}.cni]
  bin_dir = "{CNI_BIN}"
  conf_dir = "{cni_conf}"
  max_conf_num = 1
"""


class Containerd:
    """One private containerd; ``rt`` is the CRI RuntimeService stub, ``pb`` the messages."""

    def __init__(self, top: Path, rootfs: Path, pb, pb_grpc) -> None:
        import grpc
        from dockyard.runtime import launcher_script
        self.top = top
        self.pb = pb
        self.tag = uuid.uuid4().hex[:6]
        self.bridge = f"dykcri{self.tag[:4]}"
        self.subnet = f"10.{200 + int(self.tag[:2], 16) % 50}.{int(self.tag[2:4], 16)}.0/24"
        self.cgroup_parent = f"/dyk-cri-{self.tag}"
        self.runc_root = top / "dockyard-runc"
        self.sock = top / "containerd.sock"
        self.pods: list[str] = []
        self.proc = None
        self.pod_netns: list[str] = []
        bin_dir = top / "bin"
        bin_dir.mkdir(parents=True)
        self.launcher = bin_dir / "dockyard-runc"
        self.launcher.write_text(launcher_script())
        self.launcher.chmod(0o755)
        (top / "config.toml").write_text(_config(top, str(self.launcher), self.runc_root,
                                                 self.bridge, self.subnet))
        self.log = open(top / "containerd.log", "wb")
        self.proc = subprocess.Popen(["containerd", "--config", str(top / "config.toml"),
                                      "--log-level", "info"], stdout=self.log, stderr=self.log,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 30
        while not self.sock.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("containerd did not start:\n" + self.log_text()[-3000:])
            time.sleep(0.05)
        tar = top / "image.tar"
        tar.write_bytes(image_tar(rootfs))
        subprocess.run(["ctr", "-a", str(self.sock), "-n", "k8s.io", "images", "import",
                        str(tar)], check=True, capture_output=True)
        self.channel = grpc.insecure_channel(f"unix://{self.sock}")
        self.rt = pb_grpc.RuntimeServiceStub(self.channel)
        deadline = time.monotonic() + 30
        while True:   # the CRI plugin initialises after the socket is up
            try:
                self.rt.Version(pb.VersionRequest(version="v1"), timeout=5)
                break
            except grpc.RpcError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def log_text(self) -> str:
        try:
            return (self.top / "containerd.log").read_text(errors="replace")
        except OSError:
            return ""

    # -- pods and containers -------------------------------------------------

    def pod_config(self, name: str, host_network: bool = False, hostname: str = ""):
        pb = self.pb
        ns = pb.NamespaceOption(network=pb.NODE if host_network else pb.POD, pid=pb.CONTAINER,
                                ipc=pb.POD)
        logs = self.top / "logs" / name
        logs.mkdir(parents=True, exist_ok=True)
        return pb.PodSandboxConfig(
            metadata=pb.PodSandboxMetadata(name=name, uid=uuid.uuid4().hex, namespace="dyk-test"),
            hostname=hostname, log_directory=str(logs),
            linux=pb.LinuxPodSandboxConfig(
                cgroup_parent=self.cgroup_parent,
                security_context=pb.LinuxSandboxSecurityContext(namespace_options=ns)))

    def run_pod(self, config, handler: str = "dockyard") -> str:
        pid = self.rt.RunPodSandbox(self.pb.RunPodSandboxRequest(
            config=config, runtime_handler=handler), timeout=120).pod_sandbox_id
        self.pods.append(pid)
        # the pod's own network namespace (none on the host network), checked gone at the end:
        # only ours, since other tests on the machine may make cni-* namespaces meanwhile
        info = self.rt.PodSandboxStatus(self.pb.PodSandboxStatusRequest(
            pod_sandbox_id=pid, verbose=True), timeout=30).info
        spec = json.loads(info.get("info", "{}")).get("runtimeSpec", {})
        ns = next((n.get("path", "") for n in spec.get("linux", {}).get("namespaces", [])
                   if n.get("type") == "network"), "")
        host = config.linux.security_context.namespace_options.network == 2   # NODE
        assert bool(ns) != host, (ns, host)
        if ns:
            self.pod_netns.append(ns)
        return pid

    def create(self, pod: str, config, name: str, command: list[str], tty: bool = False,
               stdin: bool = False) -> str:
        pb = self.pb
        c = pb.ContainerConfig(metadata=pb.ContainerMetadata(name=name),
                               image=pb.ImageSpec(image=IMAGE), command=command,
                               log_path=f"{name}.log", tty=tty, stdin=stdin)
        return self.rt.CreateContainer(pb.CreateContainerRequest(
            pod_sandbox_id=pod, config=c, sandbox_config=config), timeout=120).container_id

    def start(self, cid: str) -> None:
        self.rt.StartContainer(self.pb.StartContainerRequest(container_id=cid), timeout=120)

    def exec_sync(self, cid: str, cmd: list[str], timeout: int = 30):
        return self.rt.ExecSync(self.pb.ExecSyncRequest(container_id=cid, cmd=cmd,
                                                        timeout=timeout), timeout=timeout + 30)

    def status(self, cid: str):
        return self.rt.ContainerStatus(self.pb.ContainerStatusRequest(container_id=cid),
                                       timeout=30).status

    def remove_pod(self, pod: str) -> None:
        self.rt.StopPodSandbox(self.pb.StopPodSandboxRequest(pod_sandbox_id=pod), timeout=120)
        self.rt.RemovePodSandbox(self.pb.RemovePodSandboxRequest(pod_sandbox_id=pod), timeout=120)
        if pod in self.pods:
            self.pods.remove(pod)

    # -- what is left ----------------------------------------------------------

    def shims(self) -> list[int]:
        """containerd-shim processes of this containerd (its address is on their command line)."""
        out = []
        for p in glob.glob("/proc/[0-9]*/cmdline"):
            try:
                with open(p, "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            if argv and b"containerd-shim" in argv[0] and str(self.sock).encode() in argv:
                out.append(int(p.split("/")[2]))
        return out

    def leftovers(self) -> dict[str, list]:
        """What the pods made and should have removed: mounts under our directory,
        container cgroups under our parent, runtime state, shims, network
        namespaces, CNI IP leases, iptables rules naming our bridge or subnet."""
        left: dict[str, list] = {}
        with open("/proc/self/mountinfo") as f:
            mounts = [ln.split()[4] for ln in f if str(self.top) in ln.split()[4]]
        left["mounts"] = mounts
        left["cgroups"] = [d for d in glob.glob(f"/sys/fs/cgroup/*{self.cgroup_parent}/*")
                           + glob.glob(f"/sys/fs/cgroup/*/*{self.cgroup_parent}/*")
                           if os.path.isdir(d)]
        state = []
        for d in (self.runc_root / "k8s.io", Path(f"{self.runc_root}-runc") / "k8s.io"):
            if d.is_dir():
                state += os.listdir(d)
        left["runtime state"] = state
        left["shims"] = self.shims()
        left["netns"] = sorted(p for p in self.pod_netns if os.path.lexists(p))
        ipam = self.top / "ipam"
        left["ip leases"] = [p.name for p in ipam.rglob("*") if p.is_file()
                             and p.name[0].isdigit()] if ipam.exists() else []
        rules = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
        net = self.subnet.rsplit(".", 1)[0] + "."
        left["iptables"] = [r for r in rules.splitlines() if self.bridge in r or net in r]
        return {k: v for k, v in left.items() if v}

    # -- teardown ----------------------------------------------------------------

    def close(self) -> None:
        for pod in list(self.pods):
            try:
                self.remove_pod(pod)
            except Exception:  # noqa: BLE001 - go on removing the rest
                pass
        if getattr(self, "channel", None) is not None:
            self.channel.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pid in self.shims():      # shims of ours that outlived their pods
            try:
                os.killpg(os.getpgid(pid), signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        for runtime_root in (self.runc_root, Path(f"{self.runc_root}-runc")):
            for st in glob.glob(f"{runtime_root}/k8s.io/*/state.json"):
                try:
                    pid = json.load(open(st)).get("init_process_pid") or json.load(open(st)).get("pid")
                    if pid:
                        os.kill(pid, signal.SIGKILL)
                except (OSError, ValueError):
                    pass
        with open("/proc/self/mountinfo") as f:
            mounts = [ln.split()[4] for ln in f if str(self.top) in ln.split()[4]]
        for m in sorted(mounts, key=len, reverse=True):
            subprocess.run(["umount", "-l", m], capture_output=True)
        for ns in self.pod_netns:   # ours only: never another process's namespace
            if os.path.lexists(ns):
                subprocess.run(["ip", "netns", "delete", os.path.basename(ns)],
                               capture_output=True)
        for d in sorted(glob.glob(f"/sys/fs/cgroup/*{self.cgroup_parent}")
                        + glob.glob(f"/sys/fs/cgroup/*/*{self.cgroup_parent}")
                        + glob.glob(f"/sys/fs/cgroup/*{self.cgroup_parent}/*")
                        + glob.glob(f"/sys/fs/cgroup/*/*{self.cgroup_parent}/*"),
                        key=len, reverse=True):
            try:
                os.rmdir(d)
            except OSError:
                pass
        subprocess.run(["ip", "link", "delete", self.bridge], capture_output=True)
        self.log.close()
        shutil.rmtree(self.top, ignore_errors=True)
