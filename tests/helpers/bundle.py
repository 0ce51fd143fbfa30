"""OCI bundles for tests, independent of our own runtime's spec generator."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path


def write_bundle(bundle: Path, rootfs: Path, args: list[str], terminal: bool = False,
                 env: list[str] | None = None, cgroups_path: str | None = None) -> Path:
    """Write ``config.json`` (runc's default spec, adjusted) into ``bundle``."""
    bundle = Path(bundle)
    bundle.mkdir(parents=True, exist_ok=True)
    cfg_path = bundle / "config.json"
    if cfg_path.exists():
        cfg_path.unlink()
    subprocess.run(["runc", "spec", "--bundle", str(bundle)], check=True)
    cfg = json.loads(cfg_path.read_text())
    cfg["root"] = {"path": str(rootfs), "readonly": False}
    cfg["process"]["args"] = args
    cfg["process"]["terminal"] = terminal
    if env is not None:
        cfg["process"]["env"] = env
    if cgroups_path:
        cfg["linux"]["cgroupsPath"] = cgroups_path
    cfg_path.write_text(json.dumps(cfg, indent=1))
    return bundle
