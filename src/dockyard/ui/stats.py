"""Docker stats samples -> the few numbers the UI draws (plain code, no IO).

CPU percent as the docker CLI computes it (container CPU delta over system CPU
delta times online CPUs), memory without the page cache (cgroup v1 ``cache``,
v2 ``inactive_file``), network and block I/O as byte counters summed over
interfaces and devices.
"""

from __future__ import annotations


def _cpu_percent(s: dict) -> float:
    cpu, pre = s.get("cpu_stats") or {}, s.get("precpu_stats") or {}
    total = (cpu.get("cpu_usage") or {}).get("total_usage") or 0
    pre_total = (pre.get("cpu_usage") or {}).get("total_usage") or 0
    sys_d = (cpu.get("system_cpu_usage") or 0) - (pre.get("system_cpu_usage") or 0)
    cpu_d = total - pre_total
    ncpu = cpu.get("online_cpus") or len((cpu.get("cpu_usage") or {}).get("percpu_usage") or []) or 1
    if sys_d > 0 and cpu_d > 0:
        return round(cpu_d / sys_d * ncpu * 100.0, 2)
    return 0.0


def _mem(s: dict) -> tuple[int, int]:
    m = s.get("memory_stats") or {}
    usage = m.get("usage") or 0
    st = m.get("stats") or {}
    cache = st.get("inactive_file") if "inactive_file" in st else st.get("total_inactive_file", st.get("cache", 0))
    used = max(0, usage - (cache or 0))
    return used, m.get("limit") or 0


def _net(s: dict) -> tuple[int, int]:
    rx = tx = 0
    for v in (s.get("networks") or {}).values():
        rx += v.get("rx_bytes") or 0
        tx += v.get("tx_bytes") or 0
    return rx, tx


def _blk(s: dict) -> tuple[int, int]:
    r = w = 0
    for e in ((s.get("blkio_stats") or {}).get("io_service_bytes_recursive") or []):
        op = (e.get("op") or "").lower()
        if op == "read":
            r += e.get("value") or 0
        elif op == "write":
            w += e.get("value") or 0
    return r, w


def summarize(sample: dict) -> dict:
    """One stats sample -> {cpu, mem, mem_limit, rx, tx, blk_r, blk_w, pids}."""
    used, limit = _mem(sample)
    rx, tx = _net(sample)
    br, bw = _blk(sample)
    return {"cpu": _cpu_percent(sample), "mem": used, "mem_limit": limit, "rx": rx, "tx": tx,
            "blk_r": br, "blk_w": bw, "pids": (sample.get("pids_stats") or {}).get("current") or 0}
