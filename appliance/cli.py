"""The ``weir`` command (interfaces.md §1)."""

from __future__ import annotations

import argparse
import sys

from appliance import __version__

DEFAULT_CONFIG = "/etc/weir/weir.toml"
DEFAULT_SOCKET = "/run/weir/weir.sock"  # GlobalConfig.runtime_socket's default


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="weir",
        description="Weir load-balancer appliance: L7 proxy with health checks and persistence.",
    )
    parser.add_argument("--version", action="version", version=f"weir {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = sub.add_parser("run", help="run the appliance (proxy) in the foreground")
    run.add_argument("-c", "--config", default=DEFAULT_CONFIG, help="configuration file (TOML)")
    check = sub.add_parser("check", help="validate a configuration file")
    check.add_argument("-c", "--config", default=DEFAULT_CONFIG, help="configuration file (TOML)")
    ctl = sub.add_parser(
        "ctl",
        help="send a runtime-API command to a running weir (try: weir ctl help)",
        description="Send one runtime-API command (docs/runtime-api.md) and print the answer.",
    )
    ctl.add_argument("-s", "--socket", help=f"runtime socket (default: {DEFAULT_SOCKET})")
    ctl.add_argument("-c", "--config", help="read the socket path from this configuration file")
    ctl.add_argument("--json", action="store_true", help="print JSON for scripts")
    ctl.add_argument("words", nargs="+", metavar="COMMAND", help="e.g. show stat")
    demo = sub.add_parser("demo", help="start demo backends and the proxy on 127.0.0.1:8080")
    demo.add_argument("--port", type=int, default=8080, help="proxy port (default 8080)")
    ha = sub.add_parser("ha", help="run the VRRP daemon for this node ([ha.vrrp])")
    ha.add_argument("-c", "--config", default=DEFAULT_CONFIG, help="configuration file (TOML)")
    lab = sub.add_parser("lab", help="the two-node network-namespace test lab (root)")
    lab.add_argument("action", choices=["up", "down", "status"])
    lab.add_argument("--prefix", help="lab name, namespaces are PREFIX-lb1 ... (default: weir)")
    lab.add_argument("--json", action="store_true", help="print the status as JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "check":
        from appliance.config.command import run_check

        code = run_check(args.config)
        if code == 0:
            from ha.sync.probe import run_peer_check

            run_peer_check(args.config)  # warnings only: the exit code stays 0
        return code
    if args.command == "run":
        from appliance.config import ConfigError, load

        try:
            config = load(args.config, for_run=True)
        except ConfigError as exc:
            for problem in exc.problems:
                print(problem, file=sys.stderr)
            return 1
        from appliance.run import serve

        return serve(config)
    if args.command == "ctl":
        from appliance.runtime.client import run_ctl

        path = args.socket
        if path is None and args.config:
            from appliance.config import ConfigError, load

            try:
                path = load(args.config).global_.runtime_socket
            except ConfigError as exc:
                for problem in exc.problems:
                    print(problem, file=sys.stderr)
                return 1
        return run_ctl(path or DEFAULT_SOCKET, args.words, args.json)
    if args.command == "demo":
        from appliance.demo import run_demo

        return run_demo(args.port)
    if args.command == "ha":
        from appliance.config import ConfigError, load

        try:
            config = load(args.config)
        except ConfigError as exc:
            for problem in exc.problems:
                print(problem, file=sys.stderr)
            return 1
        vrrp = config.ha.vrrp if config.ha else None
        if vrrp is None or not vrrp.vips:
            what = "an [ha.vrrp] section" if vrrp is None else "at least one VIP in ha.vrrp.vips"
            print(f"{args.config}: weir ha needs {what}", file=sys.stderr)
            return 1
        from ha.vrrp.daemon import run_ha

        return run_ha(config)
    if args.command == "lab":
        from ha.lab import run_command

        return run_command(args.action, args.prefix, args.json)
    parser.print_help()
    return 1


if __name__ == "__main__":
    sys.exit(main())
