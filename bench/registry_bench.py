#!/usr/bin/env python3
"""Blob GET throughput: `dockyard registry` against Debian's docker-registry.

Both serve the same blob (100 MB of random bytes by default) on 127.0.0.1;
8 concurrent curl processes each download it several times over one
keep-alive connection. Prints MB/s for each and the ratio.

    python3 bench/registry_bench.py [--size-mb 100] [--clients 8] [--rounds 3]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DOCKER_REGISTRY = "/usr/bin/docker-registry"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", url],
                           capture_output=True, text=True)
        if r.stdout in ("200", "401"):
            return
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def push(base: str, repo: str, blob: Path, digest: str) -> None:
    r = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST",
                        "-H", "Content-Type: application/octet-stream",
                        "--data-binary", f"@{blob}", f"{base}/v2/{repo}/blobs/uploads/?digest={digest}"],
                       capture_output=True, text=True)
    if r.stdout != "201":
        # docker-registry wants a session first for some versions: POST then PUT
        loc = subprocess.run(["curl", "-s", "-D", "-", "-o", "/dev/null", "-X", "POST",
                              f"{base}/v2/{repo}/blobs/uploads/"], capture_output=True, text=True).stdout
        location = next(line.split(":", 1)[1].strip() for line in loc.splitlines()
                        if line.lower().startswith("location:"))
        if location.startswith("/"):
            location = base + location
        sep = "&" if "?" in location else "?"
        r = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "PUT",
                            "-H", "Content-Type: application/octet-stream", "--data-binary", f"@{blob}",
                            f"{location}{sep}digest={digest}"], capture_output=True, text=True)
        if r.stdout != "201":
            raise RuntimeError(f"push to {base} failed: {r.stdout}")


def measure(url: str, size: int, clients: int, rounds: int) -> float:
    """MB/s over all clients (MB = 10^6 bytes)."""
    # warm the page cache and the server
    subprocess.run(["curl", "-s", "-o", "/dev/null", url], check=True)
    start = time.monotonic()
    urls = [a for _ in range(rounds) for a in ("-o", "/dev/null", url)]
    procs = [subprocess.Popen(["curl", "-s", "-w", "%{size_download}\n", *urls],
                              stdout=subprocess.PIPE, text=True)
             for _ in range(clients)]
    total = 0
    for p in procs:
        out, _ = p.communicate()
        total += sum(int(float(x)) for x in out.split())
    elapsed = time.monotonic() - start
    expected = size * clients * rounds
    if total != expected:
        raise RuntimeError(f"{url}: downloaded {total} bytes, expected {expected}")
    return total / elapsed / 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mb", type=int, default=100)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=3, help="measure each server this many times, keep the best")
    args = ap.parse_args()
    if not os.path.exists(DOCKER_REGISTRY):
        print("docker-registry is not installed (apt-get install docker-registry)", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="regbench-"))
    procs: list[subprocess.Popen] = []
    try:
        blob = tmp / "blob"
        size = args.size_mb * 1024 * 1024
        h = hashlib.sha256()
        with open(blob, "wb") as f:
            left = size
            while left:
                chunk = os.urandom(min(left, 1 << 20))
                f.write(chunk)
                h.update(chunk)
                left -= len(chunk)
        digest = f"sha256:{h.hexdigest()}"

        ours_port, theirs_port = free_port(), free_port()
        ours = subprocess.Popen([sys.executable, "-m", "dockyard", "registry", "serve", "--addr",
                                 f"127.0.0.1:{ours_port}", "--root", str(tmp / "ours")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(ours)
        cfg = tmp / "config.yml"
        cfg.write_text(f"""version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {tmp / 'theirs'}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{theirs_port}
""")
        theirs = subprocess.Popen([DOCKER_REGISTRY, "serve", str(cfg)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(theirs)
        bases = {"dockyard registry": f"http://127.0.0.1:{ours_port}",
                 "docker-registry": f"http://127.0.0.1:{theirs_port}"}
        push_mbps: dict[str, float] = {}
        for name, base in bases.items():
            wait_http(base + "/v2/")
            push(base, "bench/blob", blob, digest)  # warm up; the timed pushes go to other repos
            best = 0.0
            for i in range(args.repeat):
                t0 = time.monotonic()
                push(base, f"bench/push{i}", blob, digest)
                best = max(best, size / (time.monotonic() - t0) / 1e6)
            push_mbps[name] = best
        results: dict[str, float] = {}
        for _ in range(args.repeat):
            for name, base in bases.items():
                mbps = measure(f"{base}/v2/bench/blob/blobs/{digest}", size, args.clients, args.rounds)
                results[name] = max(results.get(name, 0.0), mbps)
        print(f"blob GET, {args.size_mb} MiB blob, {args.clients} concurrent clients x {args.rounds} "
              f"downloads, best of {args.repeat}, loopback, {os.cpu_count()} CPUs")
        for name, mbps in results.items():
            print(f"  {name:20s} {mbps:10.1f} MB/s")
        ratio = results["dockyard registry"] / results["docker-registry"]
        print(f"  ratio (dockyard / docker-registry): {ratio:.2f}x")
        print(f"blob upload (monolithic POST of the same blob, 1 client, digest verified), best of {args.repeat}")
        for name, mbps in push_mbps.items():
            print(f"  {name:20s} {mbps:10.1f} MB/s")
        print(f"  ratio (dockyard / docker-registry): "
              f"{push_mbps['dockyard registry'] / push_mbps['docker-registry']:.2f}x")
        return 0
    finally:
        for p in procs:
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
