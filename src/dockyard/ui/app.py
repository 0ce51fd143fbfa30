"""The UI's web application: pages, login, the guard every request passes.

Everything but the login page and the static files needs a session; every
``/api/`` request needs the session's CSRF token as well (header
``X-CSRF-Token``, or ``csrf=`` in the query for EventSource and WebSocket,
which cannot set headers). Without them: 401 and nothing done.
"""

from __future__ import annotations

import html
import os
from pathlib import Path

from aiohttp import web

from dockyard.ui import security
from dockyard.ui.engine import Engine, EngineError

STATIC = Path(__file__).parent / "static"
VENDOR_FILES = {
    # served name -> path below node_modules
    "xterm.js": "@xterm/xterm/lib/xterm.js",
    "xterm.css": "@xterm/xterm/css/xterm.css",
    "addon-fit.js": "@xterm/addon-fit/lib/addon-fit.js",
    "uPlot.iife.min.js": "uplot/dist/uPlot.iife.min.js",
    "uPlot.min.css": "uplot/dist/uPlot.min.css",
}

ENGINE = web.AppKey("engine", Engine)
SESSIONS = web.AppKey("sessions", security.Sessions)
AUTH = web.AppKey("auth", security.Authenticator)
CONF = web.AppKey("conf", dict)


def default_assets() -> Path:
    return Path(os.environ.get("DOCKYARD_UI_ASSETS") or Path(__file__).parent / "vendor" / "node_modules")


def missing_assets(assets: Path) -> list[str]:
    return [rel for rel in VENDOR_FILES.values() if not (assets / rel).is_file()]


def _json_error(status: int, message: str) -> web.Response:
    return web.json_response({"message": message}, status=status)


def session_of(request: web.Request) -> security.Session | None:
    return request.app[SESSIONS].get(request.cookies.get(security.SESSION_COOKIE))


_PUBLIC_PREFIXES = ("/static/", "/vendor/")


@web.middleware
async def guard(request: web.Request, handler):
    path = request.path
    if path == "/login" or path.startswith(_PUBLIC_PREFIXES) or path == "/favicon.ico":
        return await handler(request)
    sess = session_of(request)
    if path.startswith("/api/"):
        presented = request.headers.get(security.CSRF_HEADER) or request.query.get("csrf")
        if sess is None:
            return _json_error(401, "not logged in")
        if not security.csrf_ok(sess, presented):
            return _json_error(401, "missing or wrong CSRF token")
        origin = request.headers.get("Origin")
        if origin and origin.split("://", 1)[-1] != request.host:
            return _json_error(403, f"cross-origin request from {origin} refused")
        request["session"] = sess
        try:
            return await handler(request)
        except EngineError as e:
            return _json_error(e.status if 400 <= e.status < 600 else 502, e.message)
    if sess is None:
        if request.method in ("GET", "HEAD") and path == "/":
            raise web.HTTPFound("/login")
        return _json_error(401, "not logged in")
    request["session"] = sess
    return await handler(request)


@web.middleware
async def headers(request: web.Request, handler):
    resp = await handler(request)
    h = resp.headers
    h.setdefault("X-Content-Type-Options", "nosniff")
    h.setdefault("Referrer-Policy", "no-referrer")
    h.setdefault("X-Frame-Options", "DENY")
    h.setdefault("Content-Security-Policy",
                 "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
                 "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
    return resp


# ---- login ------------------------------------------------------------------------

def _login_page(error: str = "", users: bool = False, status: int = 200) -> web.Response:
    err = f'<p class="error">{html.escape(error)}</p>' if error else ""
    fields = ('<label>User <input name="user" autocomplete="username"></label>'
              '<label>Password <input name="password" type="password" autocomplete="current-password"></label>'
              '<p class="or">or</p>') if users else ""
    body = f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Dockyard · login</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/static/app.css"></head><body class="login">
<form method="post" action="/login" class="card login-card"><h1><span class="logo">⚓</span> Dockyard</h1>{err}
{fields}<label>Token <input name="token" type="password" autocomplete="off"
placeholder="printed by dockyard ui at start"></label><button class="btn primary" type="submit">Log in</button></form>
</body></html>"""
    return web.Response(text=body, content_type="text/html", status=status)


def _start_session(request: web.Request, user: str) -> web.Response:
    sess = request.app[SESSIONS].create(user)
    resp = web.HTTPFound("/")
    resp.set_cookie(security.SESSION_COOKIE, sess.id, httponly=True, samesite="Strict", path="/",
                    secure=request.app[CONF]["tls"])
    return resp


async def login_get(request: web.Request) -> web.StreamResponse:
    auth = request.app[AUTH]
    token = request.query.get("token")
    if token is not None:
        if _throttled(request):
            return _login_page("Too many failed logins; try again later.", auth.htpasswd is not None, 429)
        if auth.check_token(token):
            return _start_session(request, "token")
        auth.throttle.failed(request.remote or "?")
        return _login_page("Wrong token.", auth.htpasswd is not None, 401)
    return _login_page(users=auth.htpasswd is not None)


def _throttled(request: web.Request) -> bool:
    return request.app[AUTH].throttle.retry_after(request.remote or "?") > 0


async def login_post(request: web.Request) -> web.StreamResponse:
    auth = request.app[AUTH]
    form = await request.post()
    users = auth.htpasswd is not None
    if _throttled(request):
        return _login_page("Too many failed logins; try again later.", users, 429)
    token, user, password = form.get("token"), form.get("user"), form.get("password")
    if token and auth.check_token(str(token)):
        return _start_session(request, "token")
    if user and users:
        import asyncio

        ok = await asyncio.get_running_loop().run_in_executor(None, auth.check_user, str(user),
                                                              str(password or ""))
        if ok:
            return _start_session(request, str(user))
    auth.throttle.failed(request.remote or "?")
    return _login_page("Wrong token." if not user else "Wrong user or password.", users, 401)


async def logout(request: web.Request) -> web.StreamResponse:
    sess = request["session"]
    if not security.csrf_ok(sess, (await request.post()).get("csrf")):
        return _json_error(401, "missing or wrong CSRF token")
    request.app[SESSIONS].drop(sess.id)
    resp = web.HTTPFound("/login")
    resp.del_cookie(security.SESSION_COOKIE, path="/")
    return resp


# ---- pages and files ----------------------------------------------------------------

async def index(request: web.Request) -> web.Response:
    sess = request["session"]
    text = (STATIC / "index.html").read_text()
    text = (text.replace("{{csrf}}", html.escape(sess.csrf))
                .replace("{{user}}", html.escape(sess.user))
                .replace("{{engine}}", html.escape(request.app[ENGINE].host)))
    return web.Response(text=text, content_type="text/html", headers={"Cache-Control": "no-store"})


async def static_file(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if name not in ("app.js", "app.css", "icon.svg"):
        raise web.HTTPNotFound()
    return web.FileResponse(STATIC / name, headers={"Cache-Control": "no-cache"})


async def vendor_file(request: web.Request) -> web.StreamResponse:
    rel = VENDOR_FILES.get(request.match_info["name"])
    if rel is None:
        raise web.HTTPNotFound()
    return web.FileResponse(request.app[CONF]["assets"] / rel, headers={"Cache-Control": "max-age=3600"})


async def favicon(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(STATIC / "icon.svg")


def make_app(engine: Engine, auth: security.Authenticator, *, assets: Path, tls: bool) -> web.Application:
    from dockyard.ui import routes, streams

    app = web.Application(middlewares=[headers, guard], client_max_size=1024 * 1024)
    app[ENGINE] = engine
    app[SESSIONS] = security.Sessions()
    app[AUTH] = auth
    app[CONF] = {"assets": Path(assets), "tls": tls}
    app.router.add_get("/login", login_get)
    app.router.add_post("/login", login_post)
    app.router.add_post("/logout", logout)
    app.router.add_get("/", index)
    app.router.add_get("/favicon.ico", favicon)
    app.router.add_get("/static/{name}", static_file)
    app.router.add_get("/vendor/{name}", vendor_file)
    routes.register(app)
    streams.register(app)

    async def _close(app: web.Application) -> None:
        await app[routes.CONTAINER_LIST].close()
        await streams.shutdown(app)
        await engine.close()

    app.on_shutdown.append(_close)
    return app
