import sys

from dockyard.supervisor.server import main

raise SystemExit(main(sys.argv[1:]))
