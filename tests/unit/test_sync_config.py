"""``[ha.sync]``'s TLS keys (appliance/config) and ``weir check``'s comparison of a peer's
table definitions with ours (ha/sync/probe.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.config import ConfigError, load_text
from ha.sync.probe import Announced, compare, our_tables

pytestmark = pytest.mark.unit

SYNC = '[ha.sync]\nlocal = "lb1"\nbind = "127.0.0.1:7777"\n'


def problems(source: str) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        load_text(source, "w.toml")
    return [str(p) for p in exc.value.problems]


def test_tls_needs_certificate_key_and_ca_together(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("x")
    assert problems(SYNC + f'tls_cert = "{cert}"\n') == [
        "w.toml:1: ha.sync.tls_key: required with tls_cert (mutual TLS needs all three)",
        "w.toml:1: ha.sync.tls_ca: required with tls_cert (mutual TLS needs all three)",
    ]


def test_tls_files_must_be_readable(tmp_path: Path) -> None:
    files = {key: tmp_path / f"{key}.pem" for key in ("tls_cert", "tls_key", "tls_ca")}
    for path in files.values():
        path.write_text("x")
    files["tls_ca"] = tmp_path / "missing.pem"
    source = SYNC + "".join(f'{key} = "{path}"\n' for key, path in files.items())
    assert problems(source) == [
        f"w.toml:6: ha.sync.tls_ca: cannot read {tmp_path}/missing.pem: No such file or directory"
    ]
    files["tls_ca"].write_text("x")
    config = load_text(source, "w.toml").ha.sync
    assert config.tls and config.tls_ca == str(files["tls_ca"])


def test_without_tls_keys_the_sync_is_plain() -> None:
    assert not load_text(SYNC).ha.sync.tls


def test_our_tables_are_the_stick_tables_as_haproxy_sees_them() -> None:
    config = load_text(
        '[backends.app.stick]\non = "cookie:JSESSIONID"\nexpire = "30m"\n'
        '[backends.src.stick]\non = "src"\nexpire = "5m"\n'
        "[backends.plain]\n[backends.cookie.cookie]\n"
    )
    assert our_tables(config) == {
        "app": Announced(6, 33, 1_800_000),
        "src": Announced(5, 16, 300_000),
    }


def test_compare_reports_key_type_length_expiry_and_missing_tables() -> None:
    ours = {"app": Announced(6, 33, 1_800_000), "src": Announced(5, 16, 300_000)}
    theirs = {"app": Announced(6, 65, 600_000), "src": Announced(4, 4, 300_000)}
    assert compare("lb2", ours, theirs, complete=False) == [
        "peer lb2 defines table 'app' with key length 65, ours has 33: the table is not synced",
        "peer lb2 expires table 'app' after 600000ms, ours after 1800000ms: entries live longer "
        "on one node",
        "peer lb2 defines table 'src' with key type ipv4, ours has ipv6: the table is not synced",
    ]
    assert compare("lb2", ours, {}, complete=False) == []
    assert compare("lb2", ours, {"app": ours["app"]}, complete=True) == [
        "peer lb2 does not define table 'src': it is not synced"
    ]
