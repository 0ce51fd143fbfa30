"""kill -9 of the daemon in the middle of a load, then a restart: the store is consistent,
the partial image is absent, and a retry succeeds."""

from __future__ import annotations

import io
import json
import os
import socket
import tarfile
import time

import pytest

from imgtar import saved_image


def _big_layer(mb: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for i in range(mb):
            data = os.urandom(1024 * 1024)
            ti = tarfile.TarInfo(f"data/blob{i:03d}")
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


@pytest.mark.slow
def test_kill9_during_load_then_restart_and_retry(dockyard_daemon):
    d = dockyard_daemon
    archive, image_id = saved_image(_big_layer(24), ["crash/big:1"])
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(str(d.sock))
    try:
        s.sendall(b"POST /v1.47/images/load?quiet=1 HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Type: application/x-tar\r\n"
                  + f"Content-Length: {len(archive)}\r\n\r\n".encode())
        s.sendall(archive[: len(archive) * 2 // 3])
        # let the daemon take in what we sent (it is written to an ingest)
        time.sleep(1.0)
        d.restart(kill=True)
    finally:
        s.close()
    status, _, body = d.request("GET", "/v1.47/images/json?all=1")
    assert status == 200 and json.loads(body) == []
    status, _, _ = d.request("GET", f"/v1.47/images/{image_id}/json")
    assert status == 404
    # the retry succeeds and gives the whole image
    status, _, body = d.request("POST", "/v1.47/images/load?quiet=1", body=archive,
                                headers={"Content-Type": "application/x-tar"}, timeout=120)
    assert status == 200 and b"Loaded image: crash/big:1" in body, body
    status, _, body = d.request("GET", "/v1.47/images/crash/big:1/json")
    assert status == 200 and json.loads(body)["Id"] == image_id
    # and a clean restart keeps it
    d.restart()
    r = d.docker("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}")
    assert r.stdout == f"crash/big:1 {image_id[7:19]}\n"


def test_client_disconnect_mid_upload_stores_nothing(dockyard_daemon, busybox_tar):
    d = dockyard_daemon
    archive, image_id = saved_image(_big_layer(8), ["cut/off:1"])
    for path, data in (("/v1.47/images/load?quiet=1", archive),
                       ("/v1.47/images/create?fromSrc=-&repo=cut/imp:1", archive)):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(str(d.sock))
        s.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-tar\r\n"
                  f"Content-Length: {len(data)}\r\n\r\n".encode())
        s.sendall(data[: len(data) // 2])
        time.sleep(0.3)
        s.close()
    # the daemon is fine, nothing half-written is visible, the ingests are gone
    deadline = time.monotonic() + 30
    ingest = d.data_root / "content" / "ingest"
    while ingest.exists() and os.listdir(ingest) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not ingest.exists() or os.listdir(ingest) == []
    status, _, body = d.request("GET", "/v1.47/images/json?all=1")
    assert status == 200 and json.loads(body) == []
    r = d.docker("load", "-i", "/dev/stdin", input=archive, text=False)
    assert r.returncode == 0 and b"Loaded image: cut/off:1" in r.stdout
