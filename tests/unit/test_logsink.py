"""Log sinks: every line arrives, in order, without the caller doing I/O."""

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.log.sink import (
    FileSink,
    NullSink,
    Severity,
    StdoutSink,
    SyslogSink,
    open_sink,
)

pytestmark = pytest.mark.unit


@pytest.fixture
def udp_listener() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5)
    yield sock
    sock.close()


def test_file_sink_writes_all_lines_in_order_and_close_flushes(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    sink = open_sink(str(path))
    lines = [f"line {i} " + "x" * (i % 300) for i in range(20000)]
    for text in lines:
        sink.write(text)
    sink.close()
    assert path.read_text().splitlines() == lines
    assert sink.dropped == 0


def test_no_line_is_stranded_while_the_writer_drains_concurrently(tmp_path: Path) -> None:
    # write() takes no lock: with no batching delay the writer empties the queue
    # while lines keep arriving, the interleaving that could leave a line queued
    # with nobody woken for it. Every line must reach the file without flush().
    path = tmp_path / "access.log"
    sink = FileSink(str(path), flush_interval=0, flush_bytes=1 << 30)
    lines = [f"line {i}" for i in range(50000)]
    for text in lines:
        sink.write(text)
    deadline = time.monotonic() + 30  # generous: the writer needs milliseconds
    while len(path.read_text().splitlines()) < len(lines) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert path.read_text().splitlines() == lines
    sink.close()
    assert sink.dropped == 0


def test_file_sink_appends_to_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    path.write_text("old\n")
    sink = FileSink(str(path))
    sink.write("new")
    sink.close()
    assert path.read_text() == "old\nnew\n"


def test_flush_waits_for_lines_written_so_far(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    sink = FileSink(str(path), flush_interval=30)
    sink.write("a")
    sink.write("b")
    sink.flush()
    assert path.read_text() == "a\nb\n"
    sink.close()


def test_reopen_after_logrotate_moved_the_file(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    sink = FileSink(str(path))
    sink.write("before rotation")
    sink.flush()
    path.rename(tmp_path / "access.log.1")
    sink.write("still to the old file")
    sink.flush()
    sink.reopen()
    sink.write("after rotation")
    sink.close()
    assert (tmp_path / "access.log.1").read_text() == "before rotation\nstill to the old file\n"
    assert path.read_text() == "after rotation\n"


def test_failed_reopen_keeps_writing_to_the_old_file(tmp_path: Path) -> None:
    logdir = tmp_path / "logs"
    logdir.mkdir()
    sink = FileSink(str(logdir / "access.log"))
    logdir.rename(tmp_path / "moved")
    sink.reopen()
    sink.write("kept")
    sink.close()
    assert (tmp_path / "moved" / "access.log").read_text() == "kept\n"
    assert "No such file or directory" in sink.last_error
    assert sink.dropped == 0


def test_backlog_bound_drops_and_counts(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    # The writer sleeps through the whole test until flush(): nothing drains the backlog.
    sink = FileSink(str(path), flush_interval=30, flush_bytes=1 << 20, max_backlog=1000)
    lines = [f"{i:04d} " + "x" * 45 for i in range(100)]  # 51 bytes with the newline
    for text in lines:
        sink.write(text)
    sink.flush()
    written = path.read_text().splitlines()
    assert written == lines[:20]  # 20 * 51 = 1020 >= 1000: the 21st is refused
    assert sink.dropped == 80
    sink.write("room again")
    sink.close()
    assert path.read_text().splitlines()[-1] == "room again"


def test_write_after_close_is_dropped(tmp_path: Path) -> None:
    sink = FileSink(str(tmp_path / "access.log"))
    sink.close()
    sink.write("late")
    sink.close()
    assert sink.dropped == 1


def test_syslog_sink_sends_one_datagram_per_line(udp_listener: socket.socket) -> None:
    host, port = udp_listener.getsockname()
    sink = open_sink(f"syslog://{host}:{port}")
    assert isinstance(sink, SyslogSink)
    sink.write("Nov 26 07:19:28 lb1 weir[1]: access line")
    sink.write("Nov 26 07:19:29 lb1 weir[1]: Server app/web1 is DOWN.", Severity.ALERT)
    sink.close()
    assert udp_listener.recv(65535) == b"<134>Nov 26 07:19:28 lb1 weir[1]: access line"
    assert udp_listener.recv(65535) == b"<129>Nov 26 07:19:29 lb1 weir[1]: Server app/web1 is DOWN."
    assert sink.dropped == 0


def test_syslog_sink_counts_undeliverable_datagrams() -> None:
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nobody listens: the kernel answers with ICMP port unreachable
    sink = SyslogSink("127.0.0.1", port)
    for i in range(5):
        sink.write(f"line {i}")
        sink.flush()
    sink.close()
    assert sink.dropped >= 1
    assert sink.last_error


def test_stdout_sink_writes_to_the_current_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    sink = StdoutSink()
    sink.write("one")
    sink.write("two")
    sink.close()
    assert capsys.readouterr().out == "one\ntwo\n"


def test_stdout_target_in_a_process() -> None:
    code = (
        "from appliance.log.sink import open_sink\n"
        "sink = open_sink('stdout')\n"
        "for i in range(1000): sink.write(f'line {i}')\n"
        "sink.close()\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).parents[2],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    assert out.splitlines() == [f"line {i}" for i in range(1000)]


@pytest.mark.parametrize("target", ["", "none"])
def test_none_discards(target: str) -> None:
    sink = open_sink(target)
    assert isinstance(sink, NullSink)
    sink.write("nothing")
    sink.flush()
    sink.reopen()
    sink.close()
    assert sink.dropped == 0


@pytest.mark.parametrize(
    "target",
    ["relative/path.log", "syslog://", "syslog://host:notaport", "syslog://h:514/x", "udp://h"],
)
def test_bad_targets_are_refused_with_the_target_named(target: str) -> None:
    with pytest.raises(ValueError, match="log target"):
        open_sink(target)


def test_unwritable_file_target_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        open_sink(str(tmp_path / "missing" / "access.log"))


def test_syslog_default_port_and_ipv6() -> None:
    v4 = open_sink("syslog://127.0.0.1")
    v6 = open_sink("syslog://[::1]:5514")
    try:
        assert isinstance(v4, SyslogSink) and v4.address == ("127.0.0.1", 514)
        assert isinstance(v6, SyslogSink) and v6.address[:2] == ("::1", 5514)
    finally:
        v4.close()
        v6.close()


def test_writer_thread_ends_on_close(tmp_path: Path) -> None:
    before = threading.active_count()
    sink = FileSink(str(tmp_path / "access.log"))
    assert threading.active_count() == before + 1
    sink.close()
    assert threading.active_count() == before
