"""How the daemon reads a container's (or an image's) filesystem: never by a host path.

The trees below a container's rootfs, a snapshot's upper directory or a layer are
written by whoever runs in the container, at the same time as we read them. So the
only host path taken is the root's own (the daemon's directory); below it every
component is opened relative to its parent's fd without following symlinks:

* :mod:`~dockyard.fsroot.resolve`: a path resolved inside the root as if chrooted there
  (``docker cp``'s paths: symlinks followed, but within the root);
* :mod:`~dockyard.fsroot.nodes`: each entry pinned by an ``O_PATH|O_NOFOLLOW`` fd whose
  ``fstat`` is its truth, contents read from that very inode, a directory walk on top;
* :mod:`~dockyard.fsroot.tar`: tar entries from those nodes (export, commit, cp).
"""
