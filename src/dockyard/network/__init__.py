"""Docker's networking model: bridges, endpoints, NAT, published ports, DNS.

Layers (plain data between them, planning separate from applying):

    ipam.py      pure address management (pools, leases, Docker's errors)
    model.py     Network / Endpoint / PortBinding dataclasses, inspect shapes
    files.py     pure /etc/hosts, /etc/resolv.conf, /etc/hostname builders
    dnsmsg.py    sans-IO DNS messages
    netns.py     run a function inside a namespace (setns in a helper thread)
    bridge.py    netlink (pyroute2): bridges, veths, addresses, routes
    firewall.py  iptables: our own chains, planned whole, applied atomically
    proxy.py     userland proxy (TCP via splice, UDP), the port allocator
    dns.py       embedded DNS at 127.0.0.11 inside each container's netns
    manager.py   NetworkManager: the service the daemon calls

How the daemon uses it (all methods block for milliseconds: call them from a
worker thread, e.g. ``await asyncio.to_thread(mgr.connect, ...)``)::

    mgr = NetworkManager(state_from_sqlite, on_change=save_to_sqlite,
                         loop=asyncio.get_running_loop())
    mgr.start()                       # or mgr.restore(state) after a restart
    # container start: runtime `create` -> init blocks; its netns is
    # /proc/<init pid>/ns/net
    mgr.connect(cid, f"/proc/{pid}/ns/net", "bridge", name="/web",
                ports=["127.0.0.1:8080:80/tcp"])           # -> Networks[...] entry
    files = mgr.container_files(cid, hostname, extra_hosts=[...], dns=[...])
    # ... write files into the bind-mounted hosts/resolv.conf/hostname, then
    # runtime `start`
    mgr.container_settings(cid)       # inspect's NetworkSettings
    mgr.release_all(cid)              # container stopped or removed
    mgr.close()                       # daemon shutdown: kernel state kept
"""
