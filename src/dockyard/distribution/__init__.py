"""The OCI distribution protocol, without I/O.

Everything here is pure: it parses and builds the pieces a registry and its
clients exchange, and owns the rules both sides must agree on. The registry
server (``dockyard.registry``) and the daemon's pull/push client use it; neither
opens a socket from here.

    reference  repository names, tags, digests (and a streaming digester),
               image references as users type them (``host:5000/a/b:tag``)
    errors     the spec's error codes, their statuses and JSON bodies
    auth       WWW-Authenticate challenges, Basic credentials, token scopes,
               token endpoint answers
    manifest   media types, manifest/index parsing and validation, what a
               manifest references, Accept negotiation, platform selection
    http       Range / Content-Range, upload ranges, Link pagination
    upload     the upload session state machine (one transition table)
    client     a client's auth state: which Authorization to send, what a 401 means
    paths      /v2/ URL paths: parse a request path into a route, build paths,
               and which access (scope) a route needs
"""
