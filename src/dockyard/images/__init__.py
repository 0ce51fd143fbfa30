"""Images: the service the daemon calls, and the pieces it is made of.

* :mod:`.service`   ImageService: list/inspect/tag/rmi/prune/history/import/save/load,
                    container root filesystems (prepare/changes/commit), GC
* :mod:`.reference` Docker's reference grammar, normalization and familiar names
* :mod:`.unpack`    safe, streaming layer application (gzip/zstd/plain, whiteouts)
* :mod:`.diff`      changes of a snapshot and layer tars made from them
* :mod:`.archive`   ``docker save``/``load`` archives (Docker 20.10/25+, OCI layouts)
* :mod:`.config`    image configs, times and Dockerfile ``changes``

Storage lives in :mod:`dockyard.content` (blobs), :mod:`dockyard.snapshots` (layers
unpacked once per chain) and :mod:`dockyard.metadata` (names and records).
"""
