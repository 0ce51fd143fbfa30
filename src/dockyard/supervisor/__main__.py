"""``python -m dockyard.supervisor --root DIR``: the holder (supervisor/holder.py), which
starts the supervisor proper as ``--serve`` with its end of their socket."""
import sys

if sys.argv[1:2] == ["--serve"]:
    from dockyard.supervisor.server import main

    raise SystemExit(main(sys.argv[2:]))

from dockyard.supervisor.holder import cli_main

raise SystemExit(cli_main(sys.argv[1:]))
