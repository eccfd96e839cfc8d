"""Typed settings: a TOML file plus environment overrides, read into nested dataclasses.

The one loader of xmppd (:mod:`xmppd.config`) and of the bridges (``bridges/irc``,
``bridges/webridge``), so a key is spelt, parsed and refused the same way in all three.
It imports nothing from the server: a program describes its configuration as dataclasses
(the top one holds a field per TOML table, table array or key) and calls :func:`load`.

Values
    ``str``, ``int``, ``float``, ``bool``, ``Literal[…]``, ``list[…]``, a union of scalars,
    a nested dataclass (a table) or a list of them (a table array). A string (every
    environment variable is one) is parsed: booleans ``true``/``false``/``1``/``0`` (also
    ``yes``/``no``/``on``/``off``, in any case), numbers as Python reads them, lists
    comma separated. An ``int`` key takes a whole number only (``60`` or ``60.0``); a
    ``float`` must be finite. A union keeps a value already of one of its types.
Environment
    ``<PREFIX><SECTION>_<KEY>`` overrides the file (``XMPPD_C2S_PORT=5522``); the longest
    section name that fits wins (``XMPPD_COMPONENT_LISTENER_PORT``), and a double
    underscore goes one table deeper (``XMPPD_AUTH_PHPBB__URL``). A variable with the
    prefix that names no key is refused like an unknown key in the file.
Refusals
    :class:`ConfigError`, whose message starts with the dotted key:
    ``c2s.port: expected a number, got 'lots'``, ``c2s.prot: unknown key (did you mean
    port?)``; an unknown key from the environment also names its variable.
Validation
    Once built, every dataclass with a ``validate()`` method has it called, inner tables
    first: each section checks (and may normalise) its own keys beside the feature it
    configures, raising :meth:`ConfigError.at` with a key relative to itself; the top
    dataclass's ``validate()`` checks what spans sections.
Retired keys
    A dataclass lists keys that no longer do anything in a ``RETIRED`` class variable
    (key -> note): an old file that still sets one loads, with a warning per load.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import math
import os
import tomllib
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

log = logging.getLogger("xmppd.settings")

T = TypeVar("T")

_NOWHERE: Mapping[str, str] = types.MappingProxyType({})

TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})


class ConfigError(ValueError):
    """The configuration cannot be used; the message starts with the dotted key."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        #: Set by :meth:`at`: the key the message is about, relative to the section
        #: whose ``validate()`` raised it (the loader puts the section's path before it).
        self.key: str | None = None
        self.problem = message

    @classmethod
    def at(cls, key: str, problem: str) -> ConfigError:
        """``key: problem``; ``key`` "" means the section itself."""
        err = cls(f"{key}: {problem}" if key else problem)
        err.key = key
        err.problem = problem
        return err

    def within(self, path: str) -> ConfigError:
        """This error of the section at ``path``, as the whole configuration names it."""
        if self.key is None or not path:
            return self
        return ConfigError.at(join(path, self.key), self.problem)


def join(path: str, key: str) -> str:
    """``c2s`` + ``port`` -> ``c2s.port``; ``components`` + ``[0]`` -> ``components[0]``."""
    if not path or not key:
        return path or key
    return path + key if key.startswith("[") else f"{path}.{key}"


# ---------------------------------------------------------------------- sources
def read_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The file's tables; a missing, unreadable or malformed file is a ConfigError."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"config file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path}: not UTF-8") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: {exc}") from None


@dataclasses.dataclass(slots=True)
class EnvOverrides:
    """The variables with a program's prefix, as tables, and which variable set what."""

    table: dict[str, Any]
    #: Dotted key -> the variable that set it (named when the key is unknown).
    origins: dict[str, str]


def env_overrides(
    schema: type,
    environ: Mapping[str, str],
    prefix: str,
    skip: Callable[[str], bool] = lambda name: False,
) -> EnvOverrides:
    """``XMPPD_C2S_PORT=5522`` -> ``{"c2s": {"port": "5522"}}`` (module docstring)."""
    sections = sorted((f.name for f in dataclasses.fields(schema)), key=len, reverse=True)
    out = EnvOverrides({}, {})
    for name, value in environ.items():
        if not name.startswith(prefix) or skip(name):
            continue
        rest = name[len(prefix) :].lower()
        section = next((s for s in sections if rest.startswith(s + "_")), None)
        if section is None:
            section, _, key = rest.partition("_")
        else:
            key = rest[len(section) + 1 :]
        path = [section, *key.split("__")] if key else [section]
        node = out.table
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{name}: {'.'.join(path[:-1])} is set by another variable")
            node = child
        node[path[-1]] = value
        out.origins[".".join(path)] = name
    return out


def merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``extra`` over ``base``, table by table."""
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


# ---------------------------------------------------------------------- building
def build(
    schema: type[T], data: Mapping[str, Any], path: str = "", origins: Mapping[str, str] = _NOWHERE
) -> T:
    """An instance of ``schema`` from ``data``; defaults for what is not there."""
    hints = typing.get_type_hints(schema)
    names = [f.name for f in dataclasses.fields(schema) if f.init]
    retired: Mapping[str, str] = getattr(schema, "RETIRED", {})
    for name in sorted(set(data) - set(names) - set(retired)):
        raise ConfigError.at(join(path, name), _unknown(join(path, name), name, names, origins))
    for name in sorted(set(data) & set(retired)):
        log.warning(
            "event=config_retired key=%s note=%r", join(path, name), retired[name] + "; remove it"
        )
    kwargs = {
        name: coerce(data[name], hints[name], join(path, name), origins)
        for name in names
        if name in data
    }
    return schema(**kwargs)


def _unknown(key: str, name: str, names: list[str], origins: Mapping[str, str]) -> str:
    problem = "unknown key"
    close = difflib.get_close_matches(name, names, n=1)
    if close:
        problem += f" (did you mean {close[0]}?)"
    var = next((v for k, v in origins.items() if k == key or k.startswith(key + ".")), None)
    if var is not None:
        problem += f" (set by {var})"
    return problem


def coerce(value: Any, typ: Any, key: str, origins: Mapping[str, str] = _NOWHERE) -> Any:
    """``value`` as ``typ`` (module docstring), or a ConfigError naming ``key``."""
    if dataclasses.is_dataclass(typ):
        if not isinstance(value, dict):
            raise ConfigError.at(key, f"expected a table, got {value!r}")
        return build(typing.cast(type, typ), value, key, origins)
    origin = typing.get_origin(typ)
    if origin is Literal:
        allowed = typing.get_args(typ)
        if value not in allowed:
            raise ConfigError.at(key, f"{value!r} is not one of {', '.join(map(repr, allowed))}")
        return value
    if origin is list:
        (item,) = typing.get_args(typ)
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise ConfigError.at(key, f"expected a list, got {value!r}")
        return [coerce(v, item, f"{key}[{i}]", origins) for i, v in enumerate(value)]
    if origin in (typing.Union, types.UnionType):
        return _union(value, typing.get_args(typ), key)
    parse = _SCALARS.get(typ)
    if parse is None:  # a schema bug, not bad input
        raise TypeError(f"{key}: the settings loader cannot read {typ!r}")
    return parse(value, key)


def _bool(value: Any, key: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        word = value.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
    raise ConfigError.at(key, f"expected true or false, got {value!r}")


def _int(value: Any, key: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    number: float | None = None
    if isinstance(value, float):
        number = value
    elif isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            try:
                number = float(value.strip())
            except ValueError:
                pass
    if number is not None and number.is_integer():
        return int(number)
    if number is not None and math.isfinite(number):
        raise ConfigError.at(key, f"expected a whole number, got {value!r}")
    raise ConfigError.at(key, f"expected a number, got {value!r}")


def _float(value: Any, key: str) -> float:
    number: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            pass
    if number is None or math.isnan(number):
        raise ConfigError.at(key, f"expected a number, got {value!r}")
    if not math.isfinite(number):
        raise ConfigError.at(key, f"expected a finite number, got {value!r}")
    return number


def _str(value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise ConfigError.at(key, f"expected a string, got {value!r}")
    return value


_SCALARS: dict[Any, Callable[[Any, str], Any]] = {
    bool: _bool,
    int: _int,
    float: _float,
    str: _str,
}


def _union(value: Any, members: tuple[Any, ...], key: str) -> Any:
    for member in members:
        if type(value) is member:  # exact: a bool is no int here
            return value
    for member in members:
        try:
            return coerce(value, member, key)
        except ConfigError:
            continue
    names = " or ".join(getattr(m, "__name__", repr(m)) for m in members)
    raise ConfigError.at(key, f"expected {names}, got {value!r}")


# ---------------------------------------------------------------------- validation
def validate(obj: Any, path: str = "") -> None:
    """Call every ``validate()`` in ``obj``'s tree, inner tables first (module docstring)."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        key = join(path, f.name)
        if _is_table(value):
            validate(value, key)
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if _is_table(item):
                    validate(item, f"{key}[{i}]")
    check = getattr(obj, "validate", None)
    if check is not None:
        try:
            check()
        except ConfigError as exc:
            raise exc.within(path) from None


def _is_table(value: Any) -> bool:
    return dataclasses.is_dataclass(value) and not isinstance(value, type)


# ---------------------------------------------------------------------- one call
def read(
    schema: type[T],
    *,
    prefix: str,
    path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    skip_env: Callable[[str], bool] = lambda name: False,
) -> T:
    """Defaults, then the file (if any), then ``<prefix>…`` variables, then
    ``overrides``; built but not validated (see :func:`load`)."""
    environ = os.environ if environ is None else environ
    data = read_toml(path) if path else {}
    env = env_overrides(schema, environ, prefix, skip_env)
    data = merge(data, env.table)
    if overrides:
        data = merge(data, overrides)
    return build(schema, data, origins=env.origins)


def load(
    schema: type[T],
    *,
    prefix: str,
    path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    skip_env: Callable[[str], bool] = lambda name: False,
) -> T:
    """:func:`read`, then :func:`validate`: a configuration ready to use."""
    config = read(
        schema, prefix=prefix, path=path, environ=environ, overrides=overrides, skip_env=skip_env
    )
    validate(config)
    return config
