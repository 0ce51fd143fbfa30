"""Pull/push progress messages -> one overall bar (plain code, no IO).

The engine streams JSON lines per layer ({"id", "status", "progressDetail":
{"current", "total"}}); :class:`Progress` folds them into bytes done over
bytes known, layers done over layers seen, and the last status line.
"""

from __future__ import annotations

_DONE = ("pull complete", "already exists", "pushed", "layer already exists", "mounted from")


class Progress:
    def __init__(self) -> None:
        self.layers: dict[str, dict] = {}
        self.status = ""
        self.error: str | None = None
        # the engine names every layer ("Pulling fs layer", "Already exists", "Preparing")
        # before it moves any: until then the total is unknown and the bar stays at 0
        self.started = False
        self.best = 0.0

    def feed(self, msg: dict) -> dict:
        if msg.get("error") or msg.get("errorDetail"):
            self.error = msg.get("error") or (msg.get("errorDetail") or {}).get("message") or "error"
        lid = msg.get("id")
        status = msg.get("status") or ""
        if lid and status and not status.lower().startswith(
                ("pulling fs layer", "already exists", "preparing", "pulling from", "the push refers",
                 )):
            self.started = True
        if lid and status and not status.lower().startswith(("pulling from", "the push refers")):
            layer = self.layers.setdefault(lid, {"current": 0, "total": 0, "done": False})
            detail = msg.get("progressDetail") or {}
            if detail.get("total"):
                if status.lower().startswith("download") or status.lower().startswith("pushing"):
                    layer["total"] = detail["total"]
                    layer["current"] = min(detail.get("current") or 0, detail["total"])
            if status.lower().startswith(_DONE) or status.lower() == "download complete":
                layer["done"] = True
                if layer["total"]:
                    layer["current"] = layer["total"]
        elif status:
            self.status = status
        if status:
            self.status = f"{lid}: {status}" if lid else status
        return self.snapshot()

    def snapshot(self) -> dict:
        total = sum(l["total"] for l in self.layers.values())
        current = sum(l["current"] for l in self.layers.values())
        n = len(self.layers)
        done = sum(1 for l in self.layers.values() if l["done"])
        fractions = [1.0 if l["done"] else (l["current"] / l["total"] if l["total"] else 0.0)
                     for l in self.layers.values()]
        pct = 100.0 * sum(fractions) / n if n and self.started else 0.0
        self.best = pct = max(self.best, pct)    # never backwards
        return {"percent": round(min(pct, 100.0), 1), "current": current, "total": total,
                "layers": n, "layers_done": done, "status": self.status, "error": self.error}


class BuildOutput:
    """dockerd's classic build stream (``POST /build``) -> what the build page shows.

    Each engine message becomes at most one line for the page: ``{"text": ...}`` for
    ``stream`` output and pull ``status`` lines, ``{"error": ...}`` for ``errorDetail``;
    ``aux.ID`` is remembered as the image. ``Step N/M`` lines move ``step``.
    :meth:`summary` is the last message: ``{"done": true, "ok", "id", "error", "step"}``.
    """

    def __init__(self) -> None:
        self.image: str | None = None
        self.error: str | None = None
        self.step: tuple[int, int] | None = None

    def feed(self, msg: dict) -> dict | None:
        if not isinstance(msg, dict):
            return None
        if msg.get("error") or msg.get("errorDetail"):
            self.error = str(msg.get("error") or (msg.get("errorDetail") or {}).get("message") or "error")
            return {"error": self.error}
        aux = msg.get("aux")
        if isinstance(aux, dict) and isinstance(aux.get("ID"), str):
            self.image = aux["ID"]
            return {"id": self.image}
        text = msg.get("stream")
        if isinstance(text, str):
            if text.startswith("Step "):
                head = text[5:].split(" ", 1)[0]
                n, _, m = head.partition("/")
                if n.isdigit() and m.isdigit():
                    self.step = (int(n), int(m))
            return {"text": text, "step": list(self.step) if self.step else None}
        status = msg.get("status")
        if isinstance(status, str):
            line = (f"{msg['id']}: " if isinstance(msg.get("id"), str) else "") + status
            if isinstance(msg.get("progress"), str):
                line += " " + msg["progress"]
            return {"text": line + "\n", "status": True}
        return None

    def summary(self) -> dict:
        return {"done": True, "ok": self.error is None, "id": self.image, "error": self.error,
                "step": list(self.step) if self.step else None}
