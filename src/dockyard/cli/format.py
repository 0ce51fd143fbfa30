"""A Go text/template subset and Docker's table writer, for ``--format``.

Supported: text, ``{{.A.B}}``, ``{{.}}``, ``{{json .X}}``, pipelines ``a | b``,
``if/else if/else/end``, ``range [$i,] [$v :=] x``, ``with``, variables
``$x := ...``, ``{{- -}}`` trimming, comments, string/number/bool literals
and the functions Docker adds (json, join, split, lower, upper, title,
truncate, pad, println) beside Go's (and, or, not, len, index, print,
printf, eq, ne, lt, le, gt, ge, slice).

    render("{{.Repository}}:{{.Tag}}", row)          -> str
    FormattedWriter(fmt, header_map).write_rows(rows)  # table/plain/json like docker
"""

from __future__ import annotations

import json
import re

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Iterable


class TemplateError(Exception):
    pass


class _NoValue:
    def __str__(self) -> str:
        return "<no value>"


NO_VALUE = _NoValue()

# fields whose null is an empty slice / map in Docker's typed structs
_NULL_SLICES = {"Env", "Cmd", "Entrypoint", "OnBuild", "RepoTags", "RepoDigests", "Layers",
                "Shell", "Mounts", "Healthcheck", "Warnings", "Args", "Binds", "Links",
                "Dns", "DnsOptions", "DnsSearch", "ExtraHosts", "CapAdd", "CapDrop"}
_NULL_MAPS = {"Volumes", "Labels", "ExposedPorts", "Options", "Data", "Ports", "Attributes"}


class Context:
    """Base for a row object: fields are properties named like Docker's (``ID``, ``Tag``)."""

    FIELDS: tuple[str, ...] = ()

    def to_json(self) -> dict:
        return {f: getattr(self, f) for f in sorted(self.FIELDS)}


# --------------------------------------------------------------------------- values

def go_json(value: Any, escape_html: bool = False) -> str:
    """Compact JSON as Go writes it. Docker's template ``json`` function uses an Encoder
    with SetEscapeHTML(false) (``inspect -f '{{json .}}'`` prints ``>&2``); ``--format
    json`` of a list marshals rows with json.Marshal, which escapes ``<``, ``>``, ``&``."""
    if isinstance(value, Context):
        # a row context has a MarshalJSON method in Docker's CLI, which uses
        # json.Marshal: its output arrives HTML-escaped ("\u003cnone\u003e")
        value = value.to_json()
        escape_html = True
    s = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=_json_default)
    if escape_html:
        s = s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return s.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def _json_default(o: Any) -> Any:
    if isinstance(o, Context):
        return o.to_json()
    if o is NO_VALUE:
        return None
    raise TypeError(f"cannot encode {type(o).__name__}")


def go_str(value: Any, name: str | None = None) -> str:
    """How text/template prints a value (%v)."""
    if value is None:
        if name in _NULL_SLICES:
            return "[]"
        if name in _NULL_MAPS:
            return "map[]"
        return "<nil>"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, float):
        if value == int(value) and abs(value) < 1e21:
            r = repr(value)
            if "e" in r:
                return _go_float(value)
            return str(int(value)) if abs(value) < 1e21 and "e" not in r else r
        return _go_float(value)
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(go_str(v) for v in value) + "]"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{go_str(value[k])}" for k in sorted(value)) + "]"
    if isinstance(value, Context):
        return "{" + " ".join(go_str(getattr(value, f)) for f in value.FIELDS) + "}"
    return str(value)


def _go_float(v: float) -> str:
    s = "%g" % v
    if "e" in s:
        mant, exp = s.split("e")
        sign = exp[0]
        digits = exp[1:].lstrip("0").rjust(2, "0")
        s = f"{mant}e{sign}{digits}"
    return s


def _truth(v: Any) -> bool:
    if v is None or v is NO_VALUE:
        return False
    if isinstance(v, Context):
        return True
    return bool(v)


# --------------------------------------------------------------------------- functions

def _title(s: str) -> str:
    return re.sub(r"(^|\s)(\S)", lambda m: m.group(1) + m.group(2).upper(), s)


def _truncate(s: Any, n: int) -> str:
    s = go_str(s)
    return s[:int(n)] if len(s) > int(n) else s


def _printf(fmt: str, *args: Any) -> str:
    out, i = [], 0
    ai = iter(args)

    def repl(m: re.Match) -> str:
        flags, verb = m.group(1), m.group(2)
        if verb == "%":
            return "%"
        try:
            a = next(ai)
        except StopIteration:
            return f"%!{verb}(MISSING)"
        if verb in "vs":
            return ("%" + flags + "s") % go_str(a)
        if verb == "q":
            return ("%" + flags + "s") % json.dumps(go_str(a))
        if verb == "d":
            return ("%" + flags + "d") % int(a)
        if verb in "fFeEgGxXo":
            return ("%" + flags + verb) % a
        if verb == "t":
            return go_str(bool(a))
        return go_str(a)

    del out, i
    return re.sub(r"%([-+# 0-9.]*)([a-zA-Z%])", repl, fmt)


def _index(v: Any, *keys: Any) -> Any:
    for k in keys:
        if isinstance(v, dict):
            v = v.get(k, NO_VALUE)
        elif isinstance(v, (list, tuple, str)):
            v = v[int(k)]
        else:
            raise TemplateError(f"can't index item of type {type(v).__name__}")
    return v


def _cmp(op: Callable[[Any, Any], bool]) -> Callable[..., bool]:
    def f(a: Any, *bs: Any) -> bool:
        return any(op(a, b) for b in bs) if op is _eq else op(a, bs[0])
    return f


def _eq(a: Any, b: Any) -> bool:
    return a == b


FUNCS: dict[str, Callable[..., Any]] = {
    "json": go_json,
    "join": lambda lst, sep: sep.join(go_str(x) for x in (lst or [])),
    "split": lambda s, sep: s.split(sep),
    "lower": lambda s: go_str(s).lower(),
    "upper": lambda s: go_str(s).upper(),
    "title": lambda s: _title(go_str(s)),
    "truncate": _truncate,
    # docker's padWithSpace leaves an empty string empty
    "pad": lambda s, left, right: (" " * int(left) + go_str(s) + " " * int(right)
                                   if go_str(s) else ""),
    "println": lambda *a: " ".join(go_str(x) for x in a) + "\n",
    "print": lambda *a: "".join(go_str(x) for x in a),
    "printf": _printf,
    "len": lambda v: len(v) if v is not None else 0,
    "index": _index,
    "slice": lambda v, *ix: v[int(ix[0]) if ix else 0:int(ix[1]) if len(ix) > 1 else None],
    "not": lambda v: not _truth(v),
    "and": None,  # short-circuit, handled by the evaluator
    "or": None,
    "eq": _cmp(_eq),
    "ne": _cmp(lambda a, b: a != b),
    "lt": _cmp(lambda a, b: a < b),
    "le": _cmp(lambda a, b: a <= b),
    "gt": _cmp(lambda a, b: a > b),
    "ge": _cmp(lambda a, b: a >= b),
}

# In a table's header row every function passes the header text through.
HEADER_FUNCS = {name: (lambda *a: a[-1] if a else "") for name in FUNCS if name not in
                ("and", "or", "not", "eq", "ne", "lt", "le", "gt", "ge", "len", "index")}


# --------------------------------------------------------------------------- lexer/parser

_TOKEN = re.compile(r"""
    \s*(?:
      (?P<str>"(?:[^"\\]|\\.)*") |
      (?P<raw>`[^`]*`) |
      (?P<num>-?\d+(?:\.\d+)?) |
      (?P<decl>:=) |
      (?P<assign>=) |
      (?P<pipe>\|) |
      (?P<lp>\() |
      (?P<rp>\)) |
      (?P<comma>,) |
      (?P<field>(?:\.[A-Za-z_][A-Za-z0-9_]*)+|\.) |
      (?P<var>\$[A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*) |
      (?P<ident>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
    )""", re.X)


def _lex(src: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    src = src.strip()
    while pos < len(src):
        m = _TOKEN.match(src, pos)
        if not m or m.end() == pos:
            raise TemplateError(f"unexpected {src[pos:]!r} in command")
        kind = m.lastgroup
        assert kind
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


class _Node:
    pass


class _Text(_Node):
    def __init__(self, text: str):
        self.text = text


class _Action(_Node):
    def __init__(self, pipe: list):
        self.pipe = pipe


class _Block(_Node):
    def __init__(self, kind: str, pipe: list, var_names: list[str]):
        self.kind = kind
        self.pipe = pipe
        self.vars = var_names
        self.body: list[_Node] = []
        self.else_body: list[_Node] = []


def _parse_pipeline(tokens: list[tuple[str, str]]) -> tuple[list[str], list]:
    """-> (declared variable names, list of commands); a command is a list of operands."""
    decl: list[str] = []
    # "$x := ..." or "$i, $e := ..."
    for i, (k, _) in enumerate(tokens):
        if k in ("decl", "assign"):
            names = [v for kk, v in tokens[:i] if kk == "var"]
            decl = names
            tokens = tokens[i + 1:]
            break
    cmds: list[list] = [[]]
    stack: list[list] = []
    for k, v in tokens:
        if k == "pipe":
            if stack:
                raise TemplateError("unexpected | in parenthesized pipeline")
            cmds.append([])
        elif k == "lp":
            stack.append(cmds)
            cmds = [[]]
        elif k == "rp":
            if not stack:
                raise TemplateError("unexpected )")
            inner = cmds
            cmds = stack.pop()
            cmds[-1].append(("sub", inner))
        else:
            cmds[-1].append((k, v))
    if stack:
        raise TemplateError("unclosed (")
    if any(not c for c in cmds):
        raise TemplateError("missing command in pipeline")
    return decl, cmds


def parse(template: str) -> list[_Node]:
    parts = re.split(r"(\{\{.*?\}\})", template, flags=re.S)
    root: list[_Node] = []
    stack: list[tuple[_Block, bool]] = []  # (block, in_else)
    cur = root
    trim_next = False
    nodes_text: list[str] = []
    del nodes_text
    for i, part in enumerate(parts):
        if not (part.startswith("{{") and part.endswith("}}")):
            text = part
            if "{{" in text:
                raise TemplateError("unclosed action")
            if trim_next:
                text = text.lstrip()
            if i + 1 < len(parts) and parts[i + 1].startswith("{{- "):
                text = text.rstrip()
            if text:
                cur.append(_Text(text))
            trim_next = False
            continue
        inner = part[2:-2]
        if inner.startswith("- "):
            inner = inner[2:]
        if inner.endswith(" -"):
            inner = inner[:-2]
            trim_next = True
        inner = inner.strip()
        if inner.startswith("/*"):
            continue
        word = inner.split(None, 1)[0] if inner else ""
        rest = inner[len(word):].strip()
        if word in ("if", "range", "with"):
            decl, pipe = _parse_pipeline(_lex(rest))
            blk = _Block(word, pipe, decl)
            cur.append(blk)
            stack.append((blk, False))
            cur = blk.body
        elif word == "else":
            if not stack:
                raise TemplateError("unexpected {{else}}")
            blk, _ = stack.pop()
            if rest.startswith("if ") or rest.startswith("with "):
                kind, _, cond = rest.partition(" ")
                decl, pipe = _parse_pipeline(_lex(cond))
                nested = _Block(kind, pipe, decl)
                blk.else_body.append(nested)
                # the nested block shares the outer {{end}}
                nested.__dict__["_chained"] = True
                stack.append((blk, True))
                stack.append((nested, False))
                cur = nested.body
            else:
                stack.append((blk, True))
                cur = blk.else_body
        elif word == "end":
            if not stack:
                raise TemplateError("unexpected {{end}}")
            blk, _ = stack.pop()
            while blk.__dict__.get("_chained"):
                blk, _ = stack.pop()
            if stack:
                parent, in_else = stack[-1]
                cur = parent.else_body if in_else else parent.body
            else:
                cur = root
        else:
            if not inner:
                raise TemplateError("missing value for command")
            decl, pipe = _parse_pipeline(_lex(inner))
            act = _Action(pipe)
            act.__dict__["decl"] = decl
            cur.append(act)
    if stack:
        raise TemplateError("unexpected EOF: missing {{end}}")
    return root


# --------------------------------------------------------------------------- evaluator

class _Scope:
    def __init__(self, dot: Any, vars: dict[str, Any], funcs: dict[str, Callable]):
        self.dot = dot
        self.vars = vars
        self.funcs = funcs


class Struct(dict):
    """A JSON object whose Go field names differ from its JSON keys (``APIVersion`` is
    ``ApiVersion`` on the wire): templates may use either, ``json`` prints the keys."""

    def __init__(self, data: dict, aliases: dict[str, str]):
        super().__init__(data)
        self.aliases = aliases


def _field(value: Any, name: str) -> Any:
    if isinstance(value, Struct) and name not in value and name in value.aliases:
        return value.get(value.aliases[name], NO_VALUE)
    if isinstance(value, dict):
        return value.get(name, NO_VALUE)
    if value is None or value is NO_VALUE:
        raise TemplateError(f"nil pointer evaluating interface {{}}.{name}")
    if isinstance(value, Context):
        if name not in value.FIELDS and not hasattr(type(value), name):
            raise TemplateError(f"can't evaluate field {name} in type "
                                f"*{type(value).__name__}")
        return getattr(value, name)
    if hasattr(value, name):
        v = getattr(value, name)
        return v() if callable(v) else v
    raise TemplateError(f"can't evaluate field {name} in type {type(value).__name__}")


def _chain(value: Any, path: str) -> tuple[Any, str | None]:
    last = None
    for name in [p for p in path.split(".") if p]:
        value = _field(value, name)
        last = name
    return value, last


def _operand(tok: tuple, scope: _Scope) -> Any:
    kind, v = tok
    if kind == "str":
        return json.loads(v)
    if kind == "raw":
        return v[1:-1]
    if kind == "num":
        return float(v) if "." in v else int(v)
    if kind == "field":
        return _chain(scope.dot, v)[0] if v != "." else scope.dot
    if kind == "var":
        name, _, path = v.partition(".")
        if name not in scope.vars:
            raise TemplateError(f"undefined variable: {name}")
        return _chain(scope.vars[name], path)[0] if path else scope.vars[name]
    if kind == "sub":
        return _pipeline(v, scope)
    if kind == "ident":
        if v in ("true", "false"):
            return v == "true"
        if v == "nil":
            return None
        return _call(v, [], scope)
    raise TemplateError(f"unexpected {v!r}")


def _call(name: str, args: list[Any], scope: _Scope) -> Any:
    if name not in scope.funcs:
        raise TemplateError(f'function "{name}" not defined')
    fn = scope.funcs[name]
    if name == "and":
        r: Any = True
        for a in args:
            r = a
            if not _truth(a):
                return a
        return r
    if name == "or":
        r = False
        for a in args:
            r = a
            if _truth(a):
                return a
        return r
    try:
        return fn(*args)
    except TemplateError:
        raise
    except Exception as e:
        raise TemplateError(f"error calling {name}: {e}") from None


def _command(cmd: list, scope: _Scope, piped: Any, has_piped: bool) -> Any:
    head = cmd[0]
    if head[0] == "ident" and head[1] not in ("true", "false", "nil"):
        args = [_operand(t, scope) for t in cmd[1:]]
        if has_piped:
            args.append(piped)
        return _call(head[1], args, scope)
    if (len(cmd) > 1 or has_piped) and head[0] == "field" and head[1] != ".":
        # a method with arguments, as Go calls them: {{.Label "com.example"}}
        path, _, name = head[1].rpartition(".")
        parent = _chain(scope.dot, path)[0] if path else scope.dot
        method = getattr(type(parent), name, None) if isinstance(parent, Context) else None
        if callable(method):
            args = [_operand(t, scope) for t in cmd[1:]]
            if has_piped:
                args.append(piped)
            return method(parent, *args)
    if len(cmd) > 1 or has_piped:
        raise TemplateError(f"can't give argument to non-function {head[1]}")
    return _operand(head, scope)


def _pipeline(cmds: list, scope: _Scope) -> Any:
    val: Any = None
    for i, cmd in enumerate(cmds):
        val = _command(cmd, scope, val, i > 0)
    return val


def _last_name(cmds: list) -> str | None:
    if len(cmds) == 1 and len(cmds[0]) == 1 and cmds[0][0][0] == "field":
        return cmds[0][0][1].rsplit(".", 1)[-1] or None
    return None


def _exec(nodes: list[_Node], scope: _Scope, out: list[str]) -> None:
    for n in nodes:
        if isinstance(n, _Text):
            out.append(n.text)
        elif isinstance(n, _Action):
            val = _pipeline(n.pipe, scope)
            decl = n.__dict__.get("decl")
            if decl:
                scope.vars[decl[0]] = val
                continue
            out.append(go_str(val, _last_name(n.pipe)))
        elif isinstance(n, _Block):
            val = _pipeline(n.pipe, scope)
            if n.kind == "if":
                _exec(n.body if _truth(val) else n.else_body, scope, out)
            elif n.kind == "with":
                if _truth(val):
                    _exec(n.body, _Scope(val, dict(scope.vars), scope.funcs), out)
                else:
                    _exec(n.else_body, scope, out)
            else:  # range
                items: list[tuple[Any, Any]]
                if isinstance(val, dict):
                    items = [(k, val[k]) for k in sorted(val)]
                elif isinstance(val, (list, tuple)):
                    items = list(enumerate(val))
                elif val is None or val is NO_VALUE:
                    items = []
                elif isinstance(val, int):
                    items = [(i, i) for i in range(val)]
                else:
                    raise TemplateError(f"range can't iterate over {go_str(val)}")
                if not items:
                    _exec(n.else_body, scope, out)
                for k, v in items:
                    vars = dict(scope.vars)
                    if len(n.vars) == 1:
                        vars[n.vars[0]] = v
                    elif len(n.vars) >= 2:
                        vars[n.vars[0]], vars[n.vars[1]] = k, v
                    _exec(n.body, _Scope(v, vars, scope.funcs), out)


class Template:
    def __init__(self, source: str):
        self.source = source
        try:
            self.nodes = parse(source)
        except TemplateError as e:
            raise TemplateError(f"template parsing error: template: :1: {e}") from None

    def execute(self, data: Any, funcs: dict[str, Callable] | None = None) -> str:
        out: list[str] = []
        scope = _Scope(data, {"$": data}, funcs or FUNCS)
        try:
            _exec(self.nodes, scope, out)
        except TemplateError as e:
            raise TemplateError(f"template: :1: executing \"\": {e}") from None
        return "".join(out)


def render(template: str, data: Any) -> str:
    return Template(template).execute(data)


# --------------------------------------------------------------------------- tabwriter

def tabwrite(text: str, minwidth: int = 10, padding: int = 3) -> str:
    """Go's text/tabwriter as Docker configures it (minwidth 10, tabwidth 1, padding 3, ' ')."""
    lines = text.split("\n")
    trailing_nl = text.endswith("\n")
    if trailing_nl:
        lines = lines[:-1]
    cells = [ln.split("\t") for ln in lines]
    out: list[str] = []
    # a line with a single cell ends a block of columns
    start = 0
    for i, c in enumerate(cells + [[""]]):
        if len(c) == 1:
            _format_block(cells[start:i], minwidth, padding, out)
            if i < len(cells):
                out.append(cells[i][0])
            start = i + 1
    res = "\n".join(out)
    return res + ("\n" if trailing_nl else "")


def _format_block(block: list[list[str]], minwidth: int, padding: int, out: list[str]) -> None:
    if not block:
        return
    rendered = [""] * len(block)
    _fmt_cols(block, 0, len(block), [], minwidth, padding, rendered)
    out.extend(rendered)


def _write_lines(block, line0, line1, widths, rendered) -> None:
    for i in range(line0, line1):
        line = block[i]
        parts = []
        for j, cell in enumerate(line):
            if j < len(line) - 1 and j < len(widths):
                parts.append(cell + " " * max(widths[j] - _width(cell), 0))
            else:
                parts.append(cell)
        rendered[i] = "".join(parts)


def _width(s: str) -> int:
    return len(s)


def _fmt_cols(block, line0, line1, widths, minwidth, padding, rendered) -> None:
    column = len(widths)
    this = line0
    while this < line1:
        line = block[this]
        if column >= len(line) - 1:
            this += 1
            continue
        _write_lines(block, line0, this, widths, rendered)
        line0 = this
        width = minwidth
        while this < line1:
            line = block[this]
            if column >= len(line) - 1:
                break
            w = _width(line[column]) + padding
            if w > width:
                width = w
            this += 1
        widths.append(width)
        _fmt_cols(block, line0, this, widths, minwidth, padding, rendered)
        widths.pop()
        line0 = this
    _write_lines(block, line0, line1, widths, rendered)


# --------------------------------------------------------------------------- docker's formatter

def is_table(fmt: str) -> bool:
    return fmt.startswith("table")


def prepare_format(fmt: str) -> str:
    """Docker's preFormat: drop 'table', trim spaces, turn \\t and \\n escapes into characters."""
    if is_table(fmt):
        fmt = fmt[len("table"):]
    fmt = fmt.strip(" ")
    return fmt.replace("\\t", "\t").replace("\\n", "\n")


def format_rows(fmt: str, rows: Iterable[Any], header: dict[str, str]) -> str:
    """Render rows the way Docker's formatter.Context.Write does."""
    if fmt == "json":  # json.Marshal of each row: HTML-escaped, unlike {{json .}}
        return "".join(go_json(r, escape_html=True) + "\n" for r in rows)
    tmpl = Template(prepare_format(fmt))
    body = "".join(tmpl.execute(r) + "\n" for r in rows)
    if not is_table(fmt):
        return body
    head = tmpl.execute(dict(header), funcs={**FUNCS, **HEADER_FUNCS})
    return tabwrite(head + "\n" + body)


def inspect_each(client, names, path: str, fmt: str | None, err_prefix: str) -> int:
    """`docker network/volume inspect`: GET ``path.format(name)`` for each name, print the
    found objects (a template per object, or one indented JSON array) and each failure on
    stderr after ``err_prefix``; 1 if any failed."""
    import json
    import sys

    from dockyard import errors

    found, failed = [], False
    for n in names:
        try:
            found.append(client.get_json(path.format(n)))
        except errors.DockyardError as e:
            sys.stderr.write(f"{err_prefix}{e}\n")
            failed = True
    if fmt:
        t = Template(fmt)
        sys.stdout.write("".join(t.execute(v) + "\n" for v in found))
    else:
        sys.stdout.write(json.dumps(json.loads(go_json(found)), indent=4) + "\n")
    return 1 if failed else 0
