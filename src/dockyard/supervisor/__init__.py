"""The container supervisor: one long-lived process that parents every container.

The daemon never parents container processes (containerd's lesson). It asks the
supervisor to create, start and exec tasks through an OCI runtime; the supervisor
is the subreaper of every container init, holds their stdio, writes their logs
in Docker's json-file format and records exit statuses. It outlives the daemon,
so a daemon that stops, crashes or is upgraded finds its containers again with
their logs and exit codes intact. One process for all containers keeps the
per-container cost to a few file descriptors and buffers.
"""
