"""`dockyard registry`: an OCI distribution (v1.1) server.

    dockyard registry [serve] --addr 127.0.0.1:5000 --root DIR
        [--auth none|basic|token] [--htpasswd FILE] [--access FILE] [--anonymous-read]
        [--tls-cert F --tls-key F] [--read-only] [--no-delete] [--config FILE.json]
        [--token-realm URL --token-service S --token-issuer I --token-key PEM --token-ttl N]
    dockyard registry gc --root DIR [--dry-run] [--delete-untagged] [--grace S] [--upload-max-age S]
    dockyard registry htpasswd USER [--password P | --password-stdin]

Pieces, each with one job:
    storage  the filesystem layout (content-addressed blobs, upload sessions, per-repository links)
    service  the API's rules over storage, raising the spec's errors (no HTTP)
    auth     htpasswd, the access policy, signed tokens, and the per-request check
    server   aiohttp handlers: requests -> service calls, errors -> JSON bodies
    gc       mark and sweep of unreferenced blobs
    config   the JSON config file and flags
The protocol itself (names, digests, manifests, challenges, ranges, upload
states) lives in ``dockyard.distribution`` so clients share it.
"""
