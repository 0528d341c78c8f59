"""``weir ctl``: send one command to the runtime socket and show the answer.

Tables (``show stat``, ``show servers state``, ``show table``) are drawn with
rich for people; ``--json`` gives scripts JSON: HAProxy's own JSON for
``show info``/``show stat``, the parsed rows for the others.
"""

from __future__ import annotations

import csv
import json
import socket
import sys

from appliance.runtime.commands import OP_STATES, STAT_HEADER

TIMEOUT = 10.0
_JSON_NATIVE = ("show info", "show stat", "show peers")
_STAT_COLUMNS = (
    ("pxname", "proxy"),
    ("svname", "name"),
    ("status", "status"),
    ("weight", "weight"),
    ("scur", "cur"),
    ("smax", "max"),
    ("stot", "total"),
    ("qcur", "queue"),
    ("req_tot", "requests"),
    ("hrsp_2xx", "2xx"),
    ("hrsp_5xx", "5xx"),
    ("econ", "con err"),
    ("check_status", "check"),
    ("lastchg", "last change"),
)


class CtlError(Exception):
    """The socket cannot be used; the message says why in one line."""


def ask(path: str, command: str, timeout: float = TIMEOUT) -> str:
    """Send ``command`` in one-shot mode; return the answer without its final empty line."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(path)
        except FileNotFoundError:
            raise CtlError(f"no runtime socket at {path}: is weir running?") from None
        except PermissionError:
            raise CtlError(f"permission denied on {path}: run as Weir's user or root") from None
        except ConnectionRefusedError:
            raise CtlError(f"nothing listens on {path}: weir is not running") from None
        except OSError as exc:
            raise CtlError(f"cannot connect to {path}: {exc.strerror or exc}") from None
        sock.sendall(command.encode() + b"\n")
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
    except TimeoutError:
        raise CtlError(f"no answer on {path} within {timeout:g}s") from None
    finally:
        sock.close()
    answer = b"".join(chunks).decode(errors="replace")
    return answer[:-1] if answer.endswith("\n\n") else answer


def run_ctl(path: str, words: list[str], as_json: bool) -> int:
    command = " ".join(words)
    verb = " ".join(words[:2])
    if as_json and verb in _JSON_NATIVE and words[-1] != "json":
        command += " json"
    try:
        answer = ask(path, command)
    except CtlError as exc:
        print(f"weir ctl: {exc}", file=sys.stderr)
        return 2
    if as_json:
        if verb in _JSON_NATIVE:
            sys.stdout.write(answer)
        else:
            parsed = parse_answer(words, answer)
            rows = parsed["rows"] if isinstance(parsed, dict) else {"answer": parsed}
            print(json.dumps(rows, indent=2))
        return 0
    rows = parse_answer(words, answer)
    if isinstance(rows, dict) and "rows" in rows:
        _print_table(words, rows)
    else:
        sys.stdout.write(answer)
    return 0


def parse_answer(words: list[str], answer: str) -> dict | list | str:
    """Structure an answer: tables as rows of named fields, anything else as text."""
    verb = " ".join(words[:3])
    if answer.startswith(STAT_HEADER[:20]):
        lines = answer.splitlines()
        names = lines[0][2:].rstrip(",").split(",")
        rows = [dict(zip(names, row, strict=False)) for row in csv.reader(lines[1:]) if row]
        return {"rows": rows, "columns": _STAT_COLUMNS}
    if verb == "show servers state" and answer.startswith("1\n# "):
        lines = answer.splitlines()
        names = lines[1][2:].split()
        rows = [dict(zip(names, line.split(), strict=False)) for line in lines[2:] if line]
        for row in rows:
            row["op_state"] = OP_STATES.get(int(row["srv_op_state"]), row["srv_op_state"])
            admin = int(row["srv_admin_state"])
            row["admin_state"] = "MAINT" if admin & 0x01 else "DRAIN" if admin & 0x08 else "READY"
        columns = (
            ("be_name", "backend"),
            ("srv_name", "server"),
            ("srv_addr", "address"),
            ("srv_port", "port"),
            ("op_state", "state"),
            ("admin_state", "admin"),
            ("srv_uweight", "weight"),
            ("srv_iweight", "initial"),
            ("srv_time_since_last_change", "since (s)"),
        )
        return {"rows": rows, "columns": columns}
    if words[:2] == ["show", "table"] and answer.startswith("# table: "):
        tables: list[dict] = []
        for line in answer.splitlines():
            if line.startswith("# table: "):
                fields = dict(
                    part.strip().replace(":", "=", 1).split("=", 1) for part in line[2:].split(",")
                )
                tables.append({k.strip(): v.strip() for k, v in fields.items()} | {"entries": []})
            elif line.startswith("0x") and tables:
                entry = dict(part.split("=", 1) for part in line.split(": ", 1)[1].split())
                tables[-1]["entries"].append(entry)
        if len(words) == 2:
            columns = (("table", "table"), ("type", "type"), ("size", "size"), ("used", "used"))
            return {"rows": tables, "columns": columns}
        columns = (("key", "key"), ("server_id", "server id"), ("exp", "expires in (ms)"))
        return {"rows": tables[0]["entries"] if tables else [], "columns": columns}
    return answer


def _print_table(words: list[str], parsed: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    styles = {"UP": "green", "no check": "green", "DOWN": "red", "MAINT": "yellow"}
    table = Table(title=" ".join(words), title_justify="left")
    columns = parsed["columns"]
    for _, title in columns:
        table.add_column(title)
    for row in parsed["rows"]:
        cells = []
        for key, _ in columns:
            value = str(row.get(key, ""))
            style = styles.get(value.split(" ")[0]) if key in ("status", "op_state") else None
            cells.append(f"[{style}]{value}[/]" if style else value)
        table.add_row(*cells)
    # Wide tables stay whole when piped (rich would fold them to 80 columns).
    Console(width=None if sys.stdout.isatty() else 240).print(table)
