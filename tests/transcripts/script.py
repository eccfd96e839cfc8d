"""Reading a transcript file (``*.scs``) into a :class:`Transcript`; see README.md here.

A transcript is a header (comment lines, then ``[Client]``, ``[Server]``, ``[Nick]`` and
``[Xfail]`` sections) followed by steps. Every step keeps its line number, so a failure
can point at the line of the file that expected something else.
"""

from __future__ import annotations

import re
import textwrap
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lxml import etree

#: Namespace of the matching directives (``t:partial``) inside expected stanzas.
DIRECTIVES = "urn:xmppd:transcript"
#: What stanza blocks are parsed inside: jabber:client by default, ``t:`` bound.
_WRAPPER = "<transcript xmlns='jabber:client' xmlns:t='%s'>%%s</transcript>" % DIRECTIVES

_SECTION = re.compile(r"^\[(?P<kind>\w+)\]\s*(?P<arg>.*?)\s*$")
_STEP = re.compile(
    r"^(?P<who>[\w.-]+)\s+"
    r"(?P<verb>connects|disconnects|sends:|receives:|receives in any order:|receives nothing)\s*$"
)
_WAIT = re.compile(r"^wait\s+(?P<seconds>\d+(?:\.\d+)?)\s*s(?:econds?)?\s*$")


class ScriptError(Exception):
    """The file itself is malformed (not a behaviour of the server)."""

    def __init__(self, path: Path, line: int, message: str) -> None:
        super().__init__(f"{path}:{line}: {message}")


@dataclass(frozen=True, slots=True)
class Client:
    name: str
    jid: str
    password: str

    @property
    def localpart(self) -> str:
        return self.jid.split("@", 1)[0]

    @property
    def resource(self) -> str:
        return self.jid.split("/", 1)[1] if "/" in self.jid else self.name


@dataclass(frozen=True, slots=True)
class Nick:
    """A nick reserved before the server starts (``xmppd nick register``'s effect)."""

    nick: str
    jid: str
    room: str = ""


@dataclass(frozen=True, slots=True)
class Step:
    line: int
    who: str
    #: connects, disconnects, sends, receives, receives-nothing or wait
    action: str
    #: The stanza block as written (sends) or parsed (receives).
    text: str = ""
    stanzas: tuple[etree._Element, ...] = ()
    seconds: float = 0.0


@dataclass(slots=True)
class Transcript:
    path: Path
    title: str = ""
    clients: dict[str, Client] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    nicks: list[Nick] = field(default_factory=list)
    xfail: str = ""
    steps: list[Step] = field(default_factory=list)


def parse_stanzas(text: str) -> tuple[etree._Element, ...]:
    """The stanzas of a block, in the default namespace jabber:client. ValueError if not XML."""
    parser = etree.XMLParser(remove_blank_text=True, resolve_entities=False, no_network=True)
    try:
        root = etree.fromstring((_WRAPPER % text).encode(), parser)
    except etree.XMLSyntaxError as exc:
        raise ValueError(str(exc)) from None
    return tuple(child for child in root if isinstance(child.tag, str))


def _blocks(path: Path, lines: list[str]) -> list[tuple[int, str, list[str]]]:
    """(line number, head line, indented body lines) for every unindented line."""
    blocks: list[tuple[int, str, list[str]]] = []
    for number, raw in enumerate(lines, 1):
        line = raw.rstrip()
        if not line or line.startswith("#"):
            if blocks and not line:
                blocks[-1][2].append("")
            continue
        if line[0] in " \t":
            if not blocks:
                raise ScriptError(path, number, "indented line before any step or section")
            blocks[-1][2].append(line)
            continue
        blocks.append((number, line, []))
    return blocks


def _fields(path: Path, line: int, body: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for text in body:
        if not text.strip():
            continue
        key, sep, value = text.strip().partition(":")
        if not sep:
            raise ScriptError(path, line, f"expected 'key: value', got {text.strip()!r}")
        out[key.strip()] = value.strip()
    return out


def _title(lines: list[str]) -> str:
    words = []
    for line in lines:
        if not line.startswith("#"):
            break
        words.append(line.lstrip("#").strip())
    return " ".join(w for w in words if w)


def load(path: Path) -> Transcript:
    """Parse ``path``; :class:`ScriptError` names the line of anything malformed."""
    lines = path.read_text(encoding="utf-8").splitlines()
    script = Transcript(path=path, title=_title(lines))
    for line, head, body in _blocks(path, lines):
        section = _SECTION.match(head)
        if section:
            _section(script, line, section["kind"], section["arg"], body)
        else:
            script.steps.append(_step(script, line, head, body))
    if not script.steps:
        raise ScriptError(path, len(lines), "no steps")
    return script


def _section(script: Transcript, line: int, kind: str, arg: str, body: list[str]) -> None:
    path = script.path
    if kind == "Client":
        values = _fields(path, line, body)
        if "jid" not in values or "password" not in values:
            raise ScriptError(path, line, f"[Client] {arg} needs jid: and password:")
        script.clients[arg] = Client(arg, values["jid"], values["password"])
    elif kind == "Server":
        try:
            script.config = tomllib.loads(textwrap.dedent("\n".join(body)))
        except tomllib.TOMLDecodeError as exc:
            raise ScriptError(path, line, f"[Server] is not TOML: {exc}") from None
    elif kind == "Nick":
        values = _fields(path, line, body)
        if "jid" not in values:
            raise ScriptError(path, line, f"[Nick] {arg} needs jid:")
        script.nicks.append(Nick(arg, values["jid"], values.get("room", "")))
    elif kind == "Xfail":
        script.xfail = arg or "marked xfail"
    else:
        raise ScriptError(path, line, f"unknown section [{kind}]")


def _step(script: Transcript, line: int, head: str, body: list[str]) -> Step:
    path = script.path
    wait = _WAIT.match(head)
    if wait:
        return Step(line, "", "wait", seconds=float(wait["seconds"]))
    m = _STEP.match(head)
    if m is None:
        raise ScriptError(path, line, f"not a step: {head!r}")
    who, verb = m["who"], m["verb"]
    if who not in script.clients:
        raise ScriptError(path, line, f"{who!r} is no [Client] of this file")
    if verb in ("sends:", "receives:", "receives in any order:"):
        text = textwrap.dedent("\n".join(body)).strip()
        try:
            stanzas = parse_stanzas(text)
        except ValueError as exc:
            raise ScriptError(path, line, f"the stanzas are not XML: {exc}") from None
        if not stanzas:
            raise ScriptError(path, line, f"'{who} {verb}' has no stanza under it")
        return Step(line, who, verb.rstrip(":").replace(" ", "-"), text=text, stanzas=stanzas)
    if any(b.strip() for b in body):
        raise ScriptError(path, line, f"'{who} {verb}' takes no stanzas")
    return Step(line, who, verb.replace(" ", "-"))
