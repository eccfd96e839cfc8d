"""``python -m bridges.webridge run|say|check-config``."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys

import trio

from bridges.webridge import config as wconfig
from bridges.webridge import dgram
from bridges.webridge.events import MAX_DATAGRAM


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bridges.webridge",
        description="Forum events from a UNIX datagram socket into the chat room.",
    )
    p.add_argument(
        "--config",
        default=os.environ.get("WEBRIDGE_CONFIG"),
        help="TOML file (default: $WEBRIDGE_CONFIG; else defaults + WEBRIDGE_* variables)",
    )
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the bridge service")
    run.add_argument("--config", dest="sub_config", default=None, help=argparse.SUPPRESS)
    say = sub.add_parser("say", help="post TEXT into the room through the running service")
    say.add_argument("text", nargs="+", help="the message (words are joined by spaces)")
    say.add_argument("--config", dest="sub_config", default=None, help=argparse.SUPPRESS)
    say.add_argument("--socket", default=None, help="socket path (default: from the config)")
    say.add_argument("--who", default=None, help="post as 'WHO: TEXT' (a 'say' event)")
    check = sub.add_parser("check-config", help="validate the configuration and exit")
    check.add_argument("--config", dest="sub_config", default=None, help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    path = args.sub_config or args.config
    try:
        config = wconfig.load(path, require_secret=args.command != "say")
        if args.command == "run":
            config.read_secret()
    except wconfig.ConfigError as exc:
        print(f"webridge: configuration error: {exc}", file=sys.stderr)
        return 2
    if args.command == "check-config":
        print(f"configuration OK: room={config.xmpp.room} socket={config.socket.path}")
        return 0
    if args.command == "say":
        return _say(args, config)
    return _run(config)


def _say(args: argparse.Namespace, config: wconfig.Config) -> int:
    text = " ".join(args.text)
    # JSON even for raw text: a message that starts with "{" stays a message.
    event = (
        {"type": "say", "who": args.who, "text": text}
        if args.who
        else {"type": "raw", "text": text}
    )
    data = json.dumps(event, ensure_ascii=False).encode("utf-8")
    if len(data) >= MAX_DATAGRAM:
        print(f"webridge: message too long ({len(data)} bytes)", file=sys.stderr)
        return 1
    path = args.socket or config.socket.path
    try:
        dgram.send(path, data)
    except OSError as exc:
        print(
            f"webridge: cannot reach the bridge at {path}: {exc.strerror or exc}", file=sys.stderr
        )
        return 1
    return 0


def _run(config: wconfig.Config) -> int:
    logging.basicConfig(
        level=config.log.level.upper(),
        format="%(asctime)s level=%(levelname)s logger=%(name)s %(message)s",
    )
    try:
        trio.run(_serve, config)
    except dgram.SocketError as exc:
        logging.getLogger("bridges.webridge").error("event=socket_unusable error=%r", str(exc))
        return 1
    except OSError as exc:
        logging.getLogger("bridges.webridge").error(
            "event=socket_unusable path=%s error=%s", config.socket.path, exc.strerror or exc
        )
        return 1
    return 0


async def _serve(config: wconfig.Config) -> None:
    # Imported here so `say` works without the component client's dependencies loaded.
    from bridges.webridge.service import Webridge

    bridge = Webridge(config)
    bridge.open_socket()  # before any task: a refusal is a plain error, exit status 1
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(bridge.run)
            async for signum in signals:
                logging.getLogger("bridges.webridge").info(
                    "event=webridge_stopping signal=%s", signal.Signals(signum).name
                )
                break
            with trio.move_on_after(10):
                await bridge.aclose()
            nursery.cancel_scope.cancel()
