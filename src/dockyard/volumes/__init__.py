"""Volumes: a store of named and anonymous volumes and the ``local`` driver (no HTTP here).

``service.VolumeService`` is what the daemon, the API and the container service use;
``names`` validates names, ``store`` keeps each volume's record and data under
``<data-root>/volumes/<name>/`` (``volume.json``, ``_data``), ``local`` applies the
driver's options (``type``/``device``/``o``) when a container mounts the volume,
``copyup`` fills a new volume with the image's content at its mount point.
"""
