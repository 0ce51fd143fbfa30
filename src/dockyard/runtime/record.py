"""A small stand-in for ``dataclasses`` on the runtime's startup path.

``@dataclass`` generates its methods with ``exec`` and imports ``inspect``:
about 2 ms per class plus 8 ms once, paid by every `dockyard-runc` call (the
benchmark target is within 1.5x of runc). ``@record`` gives the same shape —
fields from annotations, defaults, ``Factory`` for mutable defaults, keyword
or positional construction, equality, repr, and ``frozen`` — with generic
methods and no code generation.
"""

from __future__ import annotations


class Factory:
    """A default built per instance (like ``field(default_factory=...)``)."""

    __slots__ = ("make",)

    def __init__(self, make) -> None:
        self.make = make


class FrozenError(AttributeError):
    pass


def record(cls=None, *, frozen: bool = False):
    def wrap(cls):
        names: tuple[str, ...] = ()
        for klass in reversed(cls.__mro__):
            names += tuple(n for n in klass.__dict__.get("__annotations__", {}) if n not in names)
        defaults = {n: cls.__dict__[n] for n in names if n in cls.__dict__}

        def __init__(self, *args, **kw):
            if len(args) > len(names):
                raise TypeError(f"{cls.__name__}: too many arguments")
            values = dict(zip(names, args))
            for n in names[len(args):]:
                if n in kw:
                    values[n] = kw.pop(n)
                elif n in defaults:
                    d = defaults[n]
                    values[n] = d.make() if isinstance(d, Factory) else d
                else:
                    raise TypeError(f"{cls.__name__}: missing argument {n!r}")
            if kw:
                raise TypeError(f"{cls.__name__}: unexpected argument {next(iter(kw))!r}")
            for n, v in values.items():
                object.__setattr__(self, n, v)

        def __repr__(self):
            inner = ", ".join(f"{n}={getattr(self, n)!r}" for n in names)
            return f"{cls.__name__}({inner})"

        def __eq__(self, other):
            if other.__class__ is not self.__class__:
                return NotImplemented
            return all(getattr(self, n) == getattr(other, n) for n in names)

        cls.__init__ = __init__
        cls.__repr__ = __repr__
        cls.__eq__ = __eq__
        cls.__hash__ = None
        cls._fields = names
        if frozen:
            def __setattr__(self, name, value):
                raise FrozenError(f"{cls.__name__} is immutable (cannot set {name!r})")
            cls.__setattr__ = __setattr__
            cls.__delattr__ = __setattr__
        return cls

    return wrap(cls) if cls is not None else wrap
