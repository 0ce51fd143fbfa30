"""Containers: records, their lifecycle, and the service that drives them.

The service knows nothing of HTTP. It resolves images through the image
service, builds OCI specs (``dockyard.oci.spec``), and runs tasks through the
supervisor, which parents the processes and outlives the daemon.
"""
