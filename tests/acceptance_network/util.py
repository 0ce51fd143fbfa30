import json
import socket
import time
import urllib.request
import uuid


def uid(prefix: str = "n") -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str, timeout: float = 10) -> str:
    """GET with retries while the server in the container comes up."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=3) as r:
                return r.read().decode()
        except OSError as e:  # noqa: PERF203
            last = e
            time.sleep(0.1)
    raise AssertionError(f"{url}: {last}")


def web(d, name: str, *args: str, image: str = "busybox", text: str = "hello") -> str:
    """A detached busybox httpd on :80 serving `text` at /index.html."""
    return d.out("run", "-d", "--name", name, *args, image, "sh", "-c",
                 f"mkdir -p /www && echo {text} > /www/index.html && exec httpd -f -p 80 -h /www")


def inspect(d, what: str, *names: str) -> list:
    return json.loads(d.out(what, "inspect", *names))


def subnet24() -> str:
    """A random 10.23x.y.0/24 prefix ("10.23x.y"), so parallel test daemons do not collide."""
    import random

    return f"10.{random.randint(230, 239)}.{random.randint(0, 255)}"
