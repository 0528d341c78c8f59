"""The ``weir`` command itself: check, run's exit codes, demo."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import time

import pytest

from tests.support.proxy import WEIR, free_port, get

pytestmark = pytest.mark.integration


def test_check_reports_every_problem_with_file_and_line(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(
        '[frontends.www]\nbind = ["127.0.0.1:1"]\ndefault_backend = "ap"\n'
        '[backends.app]\nbalanse = "roundrobin"\n'
    )
    out = subprocess.run([*WEIR, "check", "-c", str(cfg)], capture_output=True, text=True)
    assert out.returncode == 1
    assert f"{cfg}:3: frontends.www.default_backend:" in out.stderr
    assert "'app'" in out.stderr
    assert f"{cfg}:5: backends.app.balanse: unknown key; did you mean 'balance'?" in out.stderr
    assert "Traceback" not in out.stderr


def test_run_refuses_a_bad_config_without_starting(tmp_path):
    cfg = tmp_path / "bad.toml"
    port = free_port()
    cfg.write_text(f'[frontends.www]\nbind = ["127.0.0.1:{port}"]\ndefault_backend = "nope"\n')
    out = subprocess.run([*WEIR, "run", "-c", str(cfg)], capture_output=True, text=True)
    assert out.returncode == 1
    assert "default_backend" in out.stderr
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass


def test_run_exits_2_when_the_port_is_taken(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cfg = tmp_path / "w.toml"
        cfg.write_text(
            f'[global]\nlog = "{tmp_path}/w.log"\n'
            f'[frontends.www]\nbind = ["127.0.0.1:{port}"]\ndefault_backend = "app"\n'
            '[backends.app]\n[[backends.app.servers]]\nname = "a"\naddress = "127.0.0.1:9"\n'
        )
        out = subprocess.run([*WEIR, "run", "-c", str(cfg)], capture_output=True, text=True)
    assert out.returncode == 2
    assert "cannot bind" in out.stderr and "Traceback" not in out.stderr


def test_help_lists_the_commands():
    out = subprocess.run([*WEIR, "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for command in ("run", "check", "demo"):
        assert command in out.stdout


def test_demo_serves_three_backends_in_turn(tmp_path):
    port = free_port()
    proc = subprocess.Popen(
        [*WEIR, "demo", "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
                break
            time.sleep(0.05)
        names = [get(port, "/").header("x-served-by") for _ in range(6)]
        assert names == ["web1", "web2", "web3"] * 2
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=15)
    assert proc.returncode == 0
    assert b"curl" in out
    assert b'"GET / HTTP/1.1"' in out
