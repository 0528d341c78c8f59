"""HAProxy's own tools against Weir's runtime socket: socat one-liners and hatop."""

from __future__ import annotations

import csv
import shutil
import subprocess
import time
import uuid

import pytest

from appliance.runtime.commands import STAT_FIELDS
from tests.integration.test_forwarding import farm
from tests.integration.test_runtime_api import ask

pytestmark = pytest.mark.interop


def need(program: str, package: str) -> None:
    if shutil.which(program) is None:
        pytest.skip(f"{program} not installed (Debian package {package})")


def test_socat_show_stat_parses_as_haproxy_csv(pool, weir):
    need("socat", "socat")
    _, body = farm(pool, n=2)
    proxy = weir(body)
    out = subprocess.run(
        ["socat", "stdio", f"unix-connect:{proxy.tmp / 'weir.sock'}"],
        input="show stat\n",
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith(
        "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,"
        "wretr,wredis,status,weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,"
        "sid,throttle,lbtot,tracked,type,rate,rate_lim,rate_max,check_status,check_code,"
        "check_duration,hrsp_1xx,hrsp_2xx,hrsp_3xx,hrsp_4xx,hrsp_5xx,hrsp_other,"
    )
    assert lines[-1] == ""  # the answer ends with an empty line
    reader = csv.DictReader([lines[0][2:], *lines[1:-1]])
    rows = [(r["pxname"], r["svname"], r["status"]) for r in reader]
    assert rows == [
        ("www", "FRONTEND", "OPEN"),
        ("app", "web1", "no check"),
        ("app", "web2", "no check"),
        ("app", "BACKEND", "UP"),
    ]
    assert reader.fieldnames[: len(STAT_FIELDS)] == list(STAT_FIELDS)


def test_hatop_shows_the_farm(pool, weir):
    need("hatop", "hatop")
    need("tmux", "tmux")
    _, body = farm(pool, n=2)
    proxy = weir(body)
    assert ask(proxy, "disable server app/web2") == "\n"
    session = f"weir-hatop-{uuid.uuid4().hex[:8]}"
    sock = proxy.tmp / "weir.sock"
    subprocess.run(
        ["tmux", "new-session", "-d", "-s", session, "-x", "160", "-y", "40", f"hatop -s {sock}"],
        check=True,
        timeout=10,
    )
    try:
        screen = ""
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            screen = subprocess.run(
                ["tmux", "capture-pane", "-p", "-t", session],
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout
            if "web1" in screen and "BACKEND" in screen:
                break
            time.sleep(0.2)
        assert "Weir Version" in screen, screen
        lines = {ln.split()[0]: ln for ln in screen.splitlines() if ln.strip()}
        assert "web1" in lines and "web2" in lines, screen
        assert "UP" in lines["BACKEND"], screen
        assert "MAINT" in lines["web2"], screen
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True, timeout=10)
