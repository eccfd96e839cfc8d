"""The carbons and account archive services in the server's list: what each registers,
and ``[mam] enabled = false`` leaving the archive (and its disco feature) out."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest

from tests.db_fixtures import upgraded_database
from xmppd.config import Config
from xmppd.mam.query import EXTENDED, MAM, QUERY
from xmppd.router import Router
from xmppd.server import SERVICES
from xmppd.services.account_mam import AccountMamService
from xmppd.services.basic import BasicServices
from xmppd.services.carbons import CARBONS, ENABLE, CarbonsService
from xmppd.services.lifecycle import ServiceContext, build_services
from xmppd.services.push import PushService
from xmppd.storage import AsyncDatabase, Database


class Accounts:
    async def user_exists(self, localpart: str) -> bool:
        return False


@pytest.fixture
def db() -> Iterator[Database]:
    with upgraded_database("sqlite") as database:
        yield database


def build(db: Database, config: Config) -> tuple[Router, object]:
    router = Router("localhost", Accounts())
    services = build_services(SERVICES, ServiceContext(config, router, AsyncDatabase(db)))
    return router, services


def test_both_services_register_their_handlers_and_features(db: Database) -> None:
    router, services = build(db, Config())
    mam = services.get(AccountMamService)  # type: ignore[attr-defined]
    carbons = services.get(CarbonsService)  # type: ignore[attr-defined]
    assert mam is not None and carbons is not None
    push = services.get(PushService)  # type: ignore[attr-defined]
    assert router.message_observers == [carbons, mam, push]  # push sees the stamped message
    assert CARBONS in router.features and ENABLE in router.account_iq
    assert QUERY in router.account_iq and QUERY in router.server_iq
    disco = services.get(BasicServices).disco  # type: ignore[attr-defined]
    assert {MAM, EXTENDED, "urn:xmpp:sid:0"} <= disco.account_features
    assert MAM not in router.features  # the archive is the account's, not the server's


def test_the_archive_can_be_switched_off(db: Database) -> None:
    config = Config()
    config = replace(config, mam=replace(config.mam, enabled=False))
    router, services = build(db, config)
    assert services.get(AccountMamService) is None  # type: ignore[attr-defined]
    assert QUERY not in router.account_iq and QUERY not in router.server_iq
    assert [type(o) for o in router.message_observers] == [CarbonsService, PushService]
    disco = services.get(BasicServices).disco  # type: ignore[attr-defined]
    assert MAM not in disco.account_features
