"""``xmppd import ejabberd``'s command line: what the source is, one-line errors with exit
status 2 and nothing written for bad input, 1 while the server runs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from xmppd.cli import main  # noqa: E402
from xmppd.migrate.detect import DetectError, detect, open_source  # noqa: E402


def test_detect(tmp_path: Path) -> None:
    assert detect("mysql://u:p@127.0.0.1/ejabberd") == "sql"
    assert detect("postgresql://127.0.0.1/ejabberd") == "sql"
    pie = tmp_path / "pie.xml"
    pie.write_text("<?xml version='1.0'?><server-data xmlns='urn:xmpp:pie:0'/>")
    assert detect(str(pie)) == "xep0227"
    dump = tmp_path / "ejabberd.dump"
    dump.write_text('{passwd,{<<"a">>,<<"b">>},<<"pw">>}.\n')
    assert detect(str(dump)) == "dump"
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    for bad in (str(other), str(tmp_path / "missing")):
        with pytest.raises(DetectError):
            detect(bad)


def test_an_export_piefxis_directory_is_read_through_its_index(tmp_path: Path) -> None:
    """``ejabberdctl export_piefxis DIR`` writes an index that XIncludes a file per host."""
    real = ROOT / "tests/data/ejabberd_23.01/ejabberd-mnesia-plain.piefxis"
    assert detect(str(real)) == "xep0227"
    from xmppd.migrate.model import Account, Kind

    accounts = [r for r in open_source(str(real)).read(Kind.ACCOUNTS) if isinstance(r, Account)]
    assert len(accounts) == 5
    two = tmp_path / "two"
    two.mkdir()
    for name in ("a.xml", "b.xml"):
        (two / name).write_text("<host xmlns='urn:xmpp:pie:0' jid='x'/>")
    with pytest.raises(DetectError, match="name the index file"):
        detect(str(two))


def test_an_unreachable_database_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(DetectError) as err:
        open_source("mysql://nobody:secret-pw@127.0.0.1:1/ejabberd")
    assert "\n" not in str(err.value) and "secret-pw" not in str(err.value)


def _config(tmp_path: Path) -> Path:
    config = tmp_path / "xmppd.toml"
    config.write_text(f'[server]\ndomain = "localhost"\ndata_dir = "{tmp_path}"\n')
    return config


def test_bad_input_exits_2_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path)
    cases = (
        [str(tmp_path / "missing.dump")],
        ["mysql://x@127.0.0.1/e", "--map-domain", "nodomain"],
    )
    for extra in cases:
        status = main(["import", "ejabberd", *extra, "--config", str(config)])
        err = capsys.readouterr().err
        assert status == 2 and err.startswith("xmppd: ") and err.count("\n") == 1
    assert not (tmp_path / "xmppd.sqlite3").exists()


def test_a_missing_reader_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pie = tmp_path / "pie.xml"
    pie.write_text("<server-data xmlns='urn:xmpp:pie:0'/>")
    modules = dict(sys.modules)
    sys.modules["xmppd.migrate.xep0227"] = None  # type: ignore[assignment]  # "not installed"
    try:
        status = main(["import", "ejabberd", str(pie), "--config", str(_config(tmp_path))])
    finally:
        sys.modules.clear()
        sys.modules.update(modules)
    assert status == 2 and "xmppd.migrate.xep0227 is missing" in capsys.readouterr().err
