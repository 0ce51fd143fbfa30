"""`dockyard ui`: the web dashboard, a process of its own and a client of the
Engine API (works against any Docker-compatible daemon).

- ``engine.py``: aiohttp client of the daemon's socket (and the exec upgrade)
- ``security.py``: login token / htpasswd users, sessions, CSRF
- ``app.py``: the aiohttp app, its guard middleware, login and files
- ``routes.py``: the JSON API the pages call (builds: the context streamed to ``POST /build``);
  ``streams.py``: SSE and the terminal
- ``containerlist.py``: the container list kept between requests until an event
- ``stats.py``, ``progress.py``: sans-IO folding of stats samples, pull/push progress and
  build output
- ``static/``: the page (our JS/CSS); ``vendor/``: npm's xterm.js and uPlot
  (installed by scripts/install-deps, not committed)
"""
