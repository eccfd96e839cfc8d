"""``python -m bridges.irc --config FILE``: run the IRC bridge until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

import trio

from bridges.irc.config import BridgeConfig, ConfigError, load


async def _main(cfg: BridgeConfig) -> None:
    from bridges.irc.bridge import IrcBridge

    bridge = IrcBridge(cfg)
    log = logging.getLogger("bridges.irc")
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(bridge.run)
            log.info(
                "event=irc_bridge_started room=%s channel=%s servers=%d",
                cfg.xmpp.room,
                cfg.irc.channel,
                len(cfg.irc.servers),
            )
            async for signum in signals:
                log.info("event=irc_bridge_stopping signal=%d", signum)
                break
            await bridge.shutdown()
            nursery.cancel_scope.cancel()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bridges.irc", description=__doc__)
    parser.add_argument("--config", type=Path, help="TOML file (env IRCBRIDGE_* override it)")
    parser.add_argument(
        "--check-config", action="store_true", help="validate the configuration and exit"
    )
    args = parser.parse_args(argv)
    try:
        cfg = load(args.config)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    if args.check_config:
        print(
            f"config ok: {cfg.xmpp.room} <-> {cfg.irc.channel} on {len(cfg.irc.servers)} server(s)"
        )
        return 0
    logging.basicConfig(
        level=getattr(logging, cfg.relay.log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    trio.run(_main, cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
