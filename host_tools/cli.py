"""The `wearsafe` command line."""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from host_tools import paths


@contextlib.contextmanager
def progress(what: str, total: int | None = None) -> Iterator[Callable[..., None] | None]:
    """A progress bar (rich) for long work while it runs, on a terminal only: a log
    gets the result lines, not a stream of redraws. It is told (done[, total])."""
    if not sys.stdout.isatty():
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    with Progress("{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  transient=True) as bar:
        task = bar.add_task(what, total=total)
        yield lambda done, of=total: bar.update(task, completed=done, total=of)


def cmd_build(args: argparse.Namespace) -> int:
    from host_tools.device.build import build

    print(build(args.board, force=True))
    return 0


def cmd_devlibs(args: argparse.Namespace) -> int:
    from host_tools.device.devlibs import install_all

    install_all()
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from host_tools.device.check import check

    check()
    print("check: firmware and boards compile with mpy-cross and use only their port's modules")
    return 0


def cmd_sim(args: argparse.Namespace) -> int:
    from host_tools.sim.fleet import Faults, run

    faults = Faults(args.outage or 0.0, args.radio_off, args.power_cut)
    return run(args.state, args.devices, args.duration, args.scenario, args.batch_seconds,
               faults, args.live, args.board, args.speed, args.network,
               upload_interval=args.upload_interval, cell_mah=args.cell_mah,
               broker=args.broker, ingest=args.ingest, db=args.db,
               ingest_workers=args.ingest_workers)


def cmd_broker_config(args: argparse.Namespace) -> int:
    import ipaddress

    from host_tools.fleet.broker import parse_address, write_aws_policy, write_config
    from host_tools.fleet.pki import LOCAL_NAMES, broker_names
    from host_tools.fleet.server import Server

    host, port = parse_address(args.listen, "--listen")
    try:  # a broker listening on one address is reached at it
        listen = [] if ipaddress.ip_address(host).is_unspecified else [host]
    except ValueError:
        listen = []
    names = broker_names([*args.broker_name, *listen])  # checked before anything is written
    server = Server(args.server).init(args.db)
    ca = server.ca
    existed = ca.broker_cert_path.exists()
    installed = args.out / ca.broker_cert_path.name
    before = installed.read_bytes() if installed.is_file() else None
    reissued = ca.ensure_broker_certificate(names)
    conf = write_config(args.out, ca, port, host, names=names)
    print(f"{conf}\n{write_aws_policy(args.out)}")
    certified = ca.certified_broker_names() or []
    print(f"broker certificate names: {', '.join(certified)} (the host of a device's --broker "
          "must be one of these)")
    if reissued and existed:
        print("re-issued the broker certificate: reload the broker (send it SIGHUP, or "
              "restart it) so it presents the new one; a broker configured from another "
              "directory needs this command run for that directory first")
    elif before is not None and before != installed.read_bytes():
        print(f"the broker certificate in {args.out} changed: reload the broker (send it "
              "SIGHUP, or restart it)")
    if set(certified) <= set(LOCAL_NAMES):
        print("devices on the network reach the broker by its LAN host name or address: "
              "name each with --broker-name")
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    from host_tools.fleet.broker import parse_address
    from host_tools.fleet.ingest import Ingest
    from host_tools.fleet.server import open_server

    host, port = parse_address(args.broker)
    print(f"ingest: {args.server} <- {host}:{port}; Ctrl-C stops it", flush=True)
    server = open_server(args.server, args.db)
    if not server.ca.offline and not server.is_simulator:
        print(f"warning: {server.ca.directory} holds the fleet CA's or the release identity's "
              "private key: whoever reads the ingest's directory could mint devices or "
              "publish updates. Move them: `wearsafe keys-offline`", file=sys.stderr)
    processes = 1 if args.shared else args.processes
    Ingest(server, process=args.process, processes=processes).run(port, host,
                                                                    shared=args.shared)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from host_tools.fleet.export import export
    from host_tools.fleet.server import open_server

    text = export(open_server(args.server, args.db), args.device, args.format)
    if args.out:
        fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


def cmd_forget(args: argparse.Namespace) -> int:
    from host_tools.fleet.broker import parse_address
    from host_tools.fleet.forget import forget
    from host_tools.fleet.server import open_server

    broker = parse_address(args.broker) if args.broker else None
    deleted, notes = forget(open_server(args.server, args.db), args.device, broker)
    print(f"forgot device {args.device}: key destroyed, {deleted} stored messages deleted, "
          "certificate revoked (in the CRL)")
    for note in notes:
        print(f"  {note}")
    return 0


def cmd_kek_rotate(args: argparse.Namespace) -> int:
    from host_tools.fleet.server import open_server

    count = open_server(args.server, args.db).rotate_kek()
    print(f"{args.server}/kek: new key-encryption key; {count} device keys rewrapped under it "
          "(restart the ingest; copies of the old kek open nothing now)")
    return 0


def _fleet_ca(server: Path):  # type: ignore[no-untyped-def]
    """The fleet CA of a server directory, without open_server's warnings."""
    from host_tools.fleet.pki import FleetCA

    if not (server / "pki" / "ca.crt").exists():
        raise paths.ToolError(f"{server} is not a wearsafe server directory (no pki/ca.crt)")
    return FleetCA(server / "pki").check()


def cmd_keys_offline(args: argparse.Namespace) -> int:
    from host_tools.fleet.pki import OFFLINE_KEYS, OFFLINE_KEYS_ENV, move_private

    ca = _fleet_ca(args.server)
    moved = [name for name in OFFLINE_KEYS if move_private(ca.directory / name, args.out / name)]
    if not moved:
        raise paths.ToolError(f"{ca.directory} holds none of {', '.join(OFFLINE_KEYS)}: "
                              "they are offline already")
    print(f"moved {', '.join(moved)} to {args.out}: keep it off the ingest's machine (and "
          f"backed up). Commands that sign or release (provision, forget, crl-renew, "
          f"broker-config, release) need {OFFLINE_KEYS_ENV}={args.out}; the ingest, export "
          "and kek-rotate do not")
    return 0


def cmd_crl_renew(args: argparse.Namespace) -> int:
    from host_tools.fleet.pki import CRL_RENEW_DAYS, crl_number, install_crl, reload_broker_pid

    ca = _fleet_ca(args.server)
    why = ca.renew_crl_if_due(force=args.force)
    crl = ca.crl()
    assert crl is not None and crl.next_update_utc is not None
    until = crl.next_update_utc.strftime("%Y-%m-%d %H:%M UTC")
    if why:
        print(f"CRL re-signed ({why}): number {crl_number(crl)}, {len(crl)} revoked, valid "
              f"until {until}")
    else:
        print(f"CRL valid until {until}: re-signed when fewer than {CRL_RENEW_DAYS} days are "
              "left (--force: now)")
    dirs = list(args.broker_dir)
    own = args.server / "broker"
    if (own / "mosquitto.conf").exists() and own not in dirs:
        dirs.append(own)
    copies = install_crl(ca, dirs)
    for copy, written in copies:
        print(f"{copy}: {'written' if written else 'already current'}")
    if not dirs:
        print(f"no broker configuration given: copy {ca.crl_path} to each broker's crlfile "
              "(--broker-dir DIR does it, whole) and reload the broker")
    changed = bool(why) or any(written for _, written in copies)
    for pid_file in args.broker_pid if changed else ():
        print(f"sent SIGHUP to the broker (pid {reload_broker_pid(pid_file)}): it rereads "
              "the CRL")
    if changed and not args.broker_pid:
        print("reload each broker now, or it keeps checking devices against the CRL it "
              "read before (refusing every device once that one ends): Mosquitto rereads it "
              "on SIGHUP: `systemctl reload mosquitto`, `kill -HUP <pid>`, or --broker-pid FILE")
    ca.warn_expiring(*dirs)
    return 0


def cmd_pki_status(args: argparse.Namespace) -> int:
    ca = _fleet_ca(args.server)
    status = ca.status([*args.broker_dir, args.server / "broker"])
    print("\n".join(status.lines()))
    warnings = status.warnings()
    for warning in warnings:
        print(f"warning: {warning}")
    return 1 if warnings else 0


def cmd_signing_key(args: argparse.Namespace) -> int:
    from host_tools.fleet.server import Server
    from host_tools.updates.images import public_spki, signing_key_for

    key = signing_key_for(Server(args.server).init(args.db), args.key)
    print(f"{key}: trusted by devices provisioned from {args.server} from now on "
          f"(KEYHASH {hashlib.sha256(public_spki(key)).hexdigest()[:16]})")
    return 0


def cmd_sign(args: argparse.Namespace) -> int:
    from host_tools.updates.images import app_bundle, sign

    payload = args.payload
    if payload is None:
        if args.kind != "app":
            raise paths.ToolError("give the firmware payload file (e.g. micropython.bin)")
        payload = app_bundle(args.board, args.out.with_suffix(".tar"))
    print(sign(payload, args.out, args.key, args.version, args.counter, args.board, args.kind))
    return 0


def cmd_publish_image(args: argparse.Namespace) -> int:
    from host_tools.fleet.broker import parse_address
    from host_tools.fleet.server import open_server
    from host_tools.updates.release import publish_image

    host, port = parse_address(args.broker)
    with progress(f"publishing {args.image.name} (bytes)") as step:
        server = open_server(args.server, args.db)
        announcement = publish_image(server, port, args.image, args.board, host, step)
    print(f"announced on updates/{args.board}/announce: {json.dumps(announcement)}")
    return 0


def cmd_verify_image(args: argparse.Namespace) -> int:
    from host_tools.device.image_check import verify_on_device

    accepted, verdict = verify_on_device(args.image, args.bundle)
    print(verdict)
    return 0 if accepted else 1


def cmd_provision(args: argparse.Namespace) -> int:
    from host_tools.device.build import build
    from host_tools.device.provision import provision
    from host_tools.fleet.broker import parse_address
    from host_tools.fleet.pki import host_name
    from host_tools.fleet.server import Server

    paths.check_board(args.board)
    host, port = parse_address(args.broker)
    broker_host = host_name(host)  # checked before anything is written
    new_ca = not (args.server / "pki" / "ca.crt").exists()
    server = Server(args.server).init(args.db)
    new_broker_cert = not server.ca.broker_cert_path.exists()
    settings = {"broker_host": broker_host, "broker_port": port,
                "batch_seconds": args.batch_seconds}
    device = provision(server, args.board, args.out, settings, force=args.force,
                       sim_fs=build("sim") if args.board == "sim" else None)
    print(f"{'created the fleet CA in ' if new_ca else 'fleet CA: '}{server.ca.directory}")
    if new_broker_cert:
        names = ", ".join(server.ca.certified_broker_names() or [])
        print(f"issued the broker certificate for {names}: install it with `wearsafe "
              f"broker-config --server {server.directory} --out DIR`")
    print(f"provisioned device {device.device_id} for board {args.board}: bundle in {args.out}; "
          f"payload key registered in {server.directory}")
    print(f"broker: {device.broker}")  # its ACL must name the device for it to get updates
    if not server.update_keys():
        print("no update-signing key yet: this device will refuse every update; run "
              "`wearsafe signing-key` before provisioning devices that should take updates")
    return 0


def cmd_flash(args: argparse.Namespace) -> int:
    from host_tools.device.flash import flash

    flash(_serial(args), args.board, args.bundle, firmware=args.firmware, app_only=args.app_only,
          frozen=args.frozen, wifi=args.wifi, baud=args.baud, dry_run=args.dry_run,
          stock_firmware=args.stock_firmware)
    return 0


def cmd_hil(args: argparse.Namespace) -> int:
    """The target suite on a board through mpremote, then the board end to end."""
    from host_tools.fleet.server import open_server
    from host_tools.testing.hil import board_end_to_end, certified_broker, run_suite

    if not args.suite_only:
        if args.broker is None or args.server is None:
            raise paths.ToolError("give --broker HOST:PORT and --server DIR for the end-to-end "
                                  "check, or --suite-only")
        # before the board is touched
        certified_broker(args.broker, open_server(args.server, args.db))
    status = run_suite(_serial(args), args.board, args.select)
    if status != 0 or args.suite_only:
        return status
    return board_end_to_end(_serial(args), args.board, args.broker, args.server)


def cmd_report(args: argparse.Namespace) -> int:
    from host_tools.fleet.server import open_server
    from host_tools.sim.report import write_report

    summary = args.summary or args.server.parent / "summary.json"
    count = write_report(open_server(args.server, args.db), args.out, summary)
    print(f"{args.out}: {count} devices (it holds readings: 0600, audited)")
    return 0


def cmd_fuzz(args: argparse.Namespace) -> int:
    from host_tools.device.build import build
    from host_tools.testing import fuzz

    build("sim")
    reports = []
    for target in args.target or [t for t in fuzz.TARGETS if t != "canary"]:
        count = args.tls_count if target == "mqtt_tls" else args.count
        with progress(f"{target}: inputs", count) as step:
            report = fuzz.run(target, count, args.seed, args.corpus, step)
        print(report.line(), flush=True)
        for failure in (report.crashes + report.hangs)[:10]:
            print(f"  {failure}")
        reports.append(report)
    if args.corpus:
        fuzz.write_summary(reports, args.corpus / "summary.json")
    return 0 if all(r.clean for r in reports) else 1


def cmd_report_security(args: argparse.Namespace) -> int:
    from host_tools.testing.security_report import run

    return run()


def cmd_vboard(args: argparse.Namespace) -> int:
    from host_tools.processes import sigterm_as_ctrl_c
    from host_tools.testing.vboard import VirtualBoard

    with sigterm_as_ctrl_c(), VirtualBoard(args.dir, args.heap, args.board) as board:
        print(f"virtual board ({board.board}, {board.heapsize} heap) on {board.port} (root "
              f"{board.root}); Ctrl-C stops it", flush=True)
        try:
            assert board.process is not None
            board.process.wait()
            err = board.process.stderr.read().decode() if board.process.stderr else ""
            raise paths.ToolError(f"the virtual board stopped: {err.strip()}")
        except KeyboardInterrupt:
            pass
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    status = 0
    for script in sorted((paths.ROOT / "tests" / "bench").glob("bench_*.py")):
        print(f"== {script.stem}", flush=True)
        status |= subprocess.call([sys.executable, str(script)])
    return status


# One spelling per concept, each option defined once below. Older spellings keep
# working (scripts and CI jobs call them) but are not shown: see ALIASES.
SERVER_HELP = ("the fleet's server directory: fleet CA, key vault, message store, audit "
               "log (docs/ARCHITECTURE.md)")
BOARD_RULE = ("commands that make a device or touch a board (provision, flash, hil) default "
              "to esp32_devkitc; the others, which work on this desktop, to sim")
GROUPS = {  # how `wearsafe --help` lists the commands
    "device": ("build", "check", "devlibs", "provision", "flash", "verify-image"),
    "fleet": ("broker-config", "ingest", "export", "forget", "kek-rotate", "keys-offline",
              "crl-renew", "pki-status"),
    "updates": ("signing-key", "sign", "publish-image"),
    "sim": ("sim", "report"),
    "test": ("hil", "vboard", "fuzz", "report-security", "bench"),
}


DB_HELP = ("keep the message store and key vault in this PostgreSQL database "
           "(postgresql://USER@HOST:PORT/DATABASE; the password in ~/.pgpass), not in "
           "SQLite files in the server directory; recorded there, so later commands need "
           "not repeat it")


def add_server(sp: argparse.ArgumentParser, required: bool = True) -> None:
    sp.add_argument("--server", type=Path, required=required, metavar="DIR", help=SERVER_HELP)
    sp.add_argument("--db", metavar="URL", help=DB_HELP)


def add_board(sp: argparse.ArgumentParser, on_desktop: bool,
              choices: tuple[str, ...] | None = None) -> None:
    default = "sim" if on_desktop else "esp32_devkitc"
    sp.add_argument("--board", default=default, choices=choices,
                    help=f"board folder under board/: {', '.join(paths.board_names())} "
                         f"(default {default}: {BOARD_RULE})")


def add_broker(sp: argparse.ArgumentParser, help: str, default: str | None = "localhost:8883",
               aliases: tuple[str, str] | None = ("--host", "--port"),
               name: str = "--broker") -> None:
    """HOST:PORT of a broker; the older HOST and PORT options stay as hidden aliases."""
    sp.add_argument(name, metavar="HOST:PORT", default=default,
                    help=help + (f" (default {default})" if default else ""))
    if aliases:
        sp.add_argument(aliases[0], dest="alias_host", help=argparse.SUPPRESS)
        sp.add_argument(aliases[1], dest="alias_port", type=int, help=argparse.SUPPRESS)
        sp.set_defaults(address_option=name.lstrip("-"))


def add_serial(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--serial", metavar="PORT", help="the board's serial port, e.g. /dev/ttyUSB0")
    sp.add_argument("--port", dest="alias_serial", help=argparse.SUPPRESS)


def resolve_aliases(args: argparse.Namespace) -> argparse.Namespace:
    """Fold the older spellings into the preferred options."""
    option = getattr(args, "address_option", None)
    if option and (args.alias_host is not None or args.alias_port is not None):
        current = getattr(args, option) or "localhost:8883"
        host, _, port = current.rpartition(":")
        if args.alias_host is not None:  # as given: an IPv6 address goes in brackets
            host = f"[{args.alias_host}]" if ":" in args.alias_host else args.alias_host
        setattr(args, option, f"{host}:{args.alias_port if args.alias_port else port}")
    if getattr(args, "alias_serial", None) and not args.serial:
        args.serial = args.alias_serial
    return args


def _serial(args: argparse.Namespace) -> str:
    if not args.serial:
        raise paths.ToolError("give the board's serial port: --serial PORT (e.g. /dev/ttyUSB0)")
    return str(args.serial)


def parser() -> argparse.ArgumentParser:
    listing = "\n".join(f"  {group:8} {', '.join(names)}" for group, names in GROUPS.items())
    p = argparse.ArgumentParser(
        prog="wearsafe", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"commands, by who uses them (wearsafe COMMAND --help for each):\n{listing}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func, help: str) -> argparse.ArgumentParser:  # type: ignore[no-untyped-def]
        sp = sub.add_parser(name, help=help, description=help)
        sp.set_defaults(func=func)
        return sp

    # -- device
    sp = add("build", cmd_build, "assemble build/<board>/fs with every module compiled to .mpy")
    add_board(sp, on_desktop=True)
    add("devlibs", cmd_devlibs, "fetch the pinned device libraries pip cannot install "
                                "(sha256-checked) into third_party/lib")
    add("check", cmd_check, "compile device code with mpy-cross and type-check it against "
                            "its port's modules")
    sp = add("provision", cmd_provision, "provision a device: identity, certificate, payload "
                                         "key (registered with the ingest) and its bundle")
    sp.add_argument("--out", type=Path, required=True, help="bundle directory to write")
    add_board(sp, on_desktop=False)
    add_server(sp)
    add_broker(sp, "the broker the device connects to; the broker's certificate must name "
                   "HOST (broker-config --broker-name)", aliases=("--broker-host", "--broker-port"))
    sp.add_argument("--batch-seconds", type=int, default=60,
                    help="seconds of vitals per sealed message (default 60)")
    sp.add_argument("--force", action="store_true",
                    help="replace the identity and keys of a device already in --out")
    sp = add("flash", cmd_flash, "flash a dev board: MicroPython and the payload key with "
                                 "esptool, then the app and a device bundle with mpremote")
    add_serial(sp)
    sp.add_argument("--bundle", type=Path, required=True,
                    help="device bundle from `wearsafe provision`")
    sp.add_argument("--firmware", type=Path,
                    help="MicroPython's combined firmware .bin, written at 0x1000: "
                         "ESP32_GENERIC, variant OTA (two OTA app slots, which signed "
                         "firmware updates need)")
    sp.add_argument("--stock-firmware", action="store_true",
                    help="accept a --firmware without OTA app slots (e.g. the stock "
                         "ESP32_GENERIC): the board then cannot take signed firmware updates")
    add_board(sp, on_desktop=False)
    sp.add_argument("--app-only", action="store_true",
                    help="keep the MicroPython on the board: copy the app and bundle only")
    sp.add_argument("--frozen", action="store_true",
                    help="the firmware has the app frozen in (board/<board>/manifest.py): "
                         "do not copy lib/")
    sp.add_argument("--wifi", type=Path, help='Wi-Fi settings to copy: {"ssid": ..., "key": ...}')
    sp.add_argument("--baud", type=int, help="esptool baud rate (default: the board's)")
    sp.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    sp = add("verify-image", cmd_verify_image, "run the device's own verifier on an image with "
                                               "a device bundle's trust anchors and counters; "
                                               "exit 0 only when the device would accept it")
    sp.add_argument("image", type=Path)
    sp.add_argument("--bundle", type=Path, required=True, help="device bundle directory")

    # -- fleet (commands that touch a fleet's server directory name it: no default
    # can point a production command at the simulator's, whose update key is a throwaway)
    sp = add("broker-config", cmd_broker_config, "write a TLS-only Mosquitto configuration, its "
                                                 "ACL and CRL, and the same rules as an AWS IoT "
                                                 "Core policy")
    add_server(sp)
    sp.add_argument("--out", type=Path, required=True, help="directory to write into")
    add_broker(sp, "address and TLS port the broker listens on (an address other than "
                   "0.0.0.0 or :: is put in its certificate too)", default="0.0.0.0:8883",
               name="--listen")
    sp.add_argument("--broker-name", action="append", default=[], metavar="NAME",
                    help="a DNS name or IP address devices reach the broker by, for its "
                         "certificate (repeatable; localhost and 127.0.0.1 always; names "
                         "certified before stay; no wildcards)")
    sp = add("ingest", cmd_ingest, "store sealed messages from the broker, each once")
    add_server(sp)
    add_broker(sp, "the broker to take messages from (HOST as its certificate names it)")
    sp.add_argument("--process", type=int, default=1, metavar="K",
                    help="this ingest process's number, 1 to 8: each has its own "
                         "certificate, whose name the broker makes its client id")
    split = sp.add_mutually_exclusive_group()
    split.add_argument("--processes", type=int, default=1, metavar="N",
                       help="N ingest processes (each started with its --process K) split "
                            "the devices between them: each reads every message and stores "
                            "its share; nothing is lost when the broker restarts")
    split.add_argument("--shared", action="store_true",
                       help="split the load through the broker instead ($share/ingest/...); "
                            "Mosquitto 2.0 drops what arrives right after a broker restart")
    sp = add("export", cmd_export, "decrypt a device's stored readings (audited)")
    add_server(sp)
    sp.add_argument("--device", required=True, help="device pseudonym")
    sp.add_argument("--format", choices=("csv", "fhir"), default="csv")
    sp.add_argument("--out", type=Path, help="file to write (0600); default standard output")
    sp = add("forget", cmd_forget, "crypto-shred a device: destroy its key, delete its records, "
                                   "revoke its certificate (audited)")
    add_server(sp)
    sp.add_argument("--device", required=True, help="device pseudonym")
    add_broker(sp, "the broker where its live session is cut (default: the listener of the "
                   "server's own broker configuration)", default=None, aliases=None)
    sp = add("kek-rotate", cmd_kek_rotate, "rewrap every device key in the vault under a "
                                           "new key-encryption key")
    add_server(sp)
    sp = add("keys-offline", cmd_keys_offline, "move the keys that can mint a device or "
                                               "publish an update (the fleet CA's, the release "
                                               "identity's) off the server directory")
    add_server(sp)
    sp.add_argument("--out", type=Path, required=True,
                    help="a directory off the ingest's machine (created 0700)")
    sp = add("crl-renew", cmd_crl_renew, "re-sign the CRL when it is due (fewer than 20 days "
                                         "left), copy it into each broker configuration and "
                                         "reload the broker; schedule it daily")
    add_server(sp)
    sp.add_argument("--broker-dir", type=Path, action="append", default=[], metavar="DIR",
                    help="a broker's configuration directory (broker-config --out): its "
                         "crl.pem is replaced whole (repeatable; SERVER/broker always when "
                         "it holds a mosquitto.conf)")
    sp.add_argument("--broker-pid", type=Path, action="append", default=[], metavar="FILE",
                    help="the pid file of a running Mosquitto (it writes one only with "
                         "`daemon true`) to send SIGHUP when the CRL changed (repeatable); "
                         "under systemd: `systemctl reload mosquitto`")
    sp.add_argument("--force", action="store_true", help="re-sign now even if not yet due")
    sp = add("pki-status", cmd_pki_status, "when the CA, the broker's certificate, the CRL, "
                                           "the service and device certificates end; exit "
                                           "status 1 when something needs attention")
    add_server(sp)
    sp.add_argument("--broker-dir", type=Path, action="append", default=[], metavar="DIR",
                    help="also check the CRL this broker configuration holds (repeatable)")

    # -- updates
    sp = add("signing-key", cmd_signing_key, "create an Ed25519 image-signing key (imgtool) and "
                                             "make devices provisioned from now on trust it")
    add_server(sp)
    sp.add_argument("--key", type=Path, required=True, help="private key file (PEM, 0600)")
    sp = add("sign", cmd_sign, "sign a firmware or app bundle into an MCUboot image (imgtool)")
    sp.add_argument("payload", type=Path, nargs="?",
                    help="firmware .bin; for --kind app, default: a bundle of build/<board>")
    sp.add_argument("--key", type=Path, required=True, help="Ed25519 signing key (PEM)")
    sp.add_argument("--version", required=True, help="MAJOR.MINOR.REVISION[+BUILD]")
    sp.add_argument("--counter", type=int, required=True,
                    help="security counter: devices refuse images below the one they run")
    add_board(sp, on_desktop=True)
    sp.add_argument("--kind", choices=("app", "firmware"), default="app")
    sp.add_argument("--out", type=Path, required=True, help="image file to write")
    sp = add("publish-image", cmd_publish_image, "publish a signed image to a board class's "
                                                 "update channel (retained, over TLS)")
    sp.add_argument("image", type=Path)
    add_server(sp)
    add_board(sp, on_desktop=True)
    add_broker(sp, "the broker to publish on (HOST as its certificate names it)")

    # -- sim
    sp = add("sim", cmd_sim, "run a broker, the ingest and a fleet of simulated devices end "
                             "to end, with a live view; a summary at the end")
    sp.add_argument("--devices", type=int, default=5, help="how many devices (default 5)")
    add_board(sp, on_desktop=True, choices=("sim", "esp32_devkitc"))
    sp.add_argument("--duration", type=float,
                    help="seconds to run (default: until Ctrl-C)")
    sp.add_argument("--network", metavar="SPEC",
                    help="a real-world link between each device and the broker, e.g. "
                         "rtt=300ms,loss=2%%,rate=100kbit,drop-every=60s (any of the four)")
    sp.add_argument("--speed", choices=("desktop", "esp32"), default="desktop",
                    help="esp32: each device's process gets the share of a core that makes "
                         "MicroPython run as fast as on an ESP32 at 240 MHz (calibrated at "
                         "start against MicroPython's published ESP32 benchmark scores; "
                         "needs a writable cgroup cpu controller, as root has here)")
    sp.add_argument("--state", type=Path, default=paths.ROOT / "sim-state",
                    help="directory for all simulator state (default: sim-state/)")
    sp.add_argument("--scenario",
                    help="what every wearer does: rest, walk, run, fever, desaturation, "
                         "off-wrist, chip-missing, or a scenario .json file (default: a mix)")
    sp.add_argument("--outage", type=float, metavar="SECONDS",
                    help="fault: the broker goes down this long in the middle of the run")
    sp.add_argument("--radio-off", action="append", default=[], metavar="DEVICE",
                    help="fault: this device (number, device-N or pseudonym) loses its radio "
                         "in the middle of the run (30 s, or as long as --outage); repeatable")
    sp.add_argument("--power-cut", action="append", default=[], metavar="DEVICE",
                    help="fault: this device loses power (kill -9) in the middle of the run "
                         "and comes back 2 s later; repeatable")
    sp.add_argument("--live", action=argparse.BooleanOptionalAction, default=None,
                    help="the live table (default on a terminal; it shows readings, so it "
                         "is never written to a pipe or file unless asked)")
    sp.add_argument("--batch-seconds", type=int, default=5,
                    help="seconds of vitals per sealed message (device default 60; 5 here "
                         "so a short run shows messages)")
    sp.add_argument("--upload-interval", type=int, default=0, metavar="SECONDS",
                    help="the radio is up only in upload windows this far apart (the "
                         "device default is 900); 0, the default here: always connected")
    sp.add_argument("--cell-mah", type=float, default=400.0,
                    help="the battery the summary's days on a charge are for (default 400)")
    sp.add_argument("--db", metavar="URL", help=DB_HELP)
    sp.add_argument("--broker", metavar="HOST:PORT",
                    help="a broker this run does not start: a staging Mosquitto from "
                         "`wearsafe broker-config --server STATE/server`, or an endpoint that "
                         "trusts the fleet CA and names HOST in its certificate (default: "
                         "start one on loopback)")
    sp.add_argument("--ingest", action=argparse.BooleanOptionalAction, default=True,
                    help="--no-ingest: no ingest here, your own pipeline consumes the "
                         "broker's messages (with --broker only)")
    sp.add_argument("--ingest-workers", type=int, default=1, metavar="N",
                    help="N ingest workers, each its own identity and persistent session, "
                         "the devices split between them as `wearsafe ingest --processes N` "
                         "splits them (default 1)")
    sp = add("report", cmd_report, "write a static HTML page (offline) with per-device plots "
                                   "of the vitals received and the fleet's delivery figures")
    add_server(sp)
    sp.add_argument("--summary", type=Path,
                    help="a `wearsafe sim` summary.json (default: next to the server directory)")
    sp.add_argument("--out", type=Path, default=paths.ROOT / "sim-state" / "report.html",
                    help="page to write (default sim-state/report.html)")

    # -- test
    sp = add("hil", cmd_hil, "run the target test suite on a board through mpremote, then "
                             "the board end to end against a broker")
    add_serial(sp)
    add_board(sp, on_desktop=False)
    add_broker(sp, "a broker the board can reach, for the end-to-end check", default=None,
               aliases=None)
    add_server(sp, required=False)
    sp.add_argument("-k", dest="select", metavar="EXPR",
                    help="only the target tests matching this pytest expression")
    sp.add_argument("--suite-only", action="store_true", help="skip the end-to-end check")
    sp = add("vboard", cmd_vboard, "serve a virtual board (unix port behind a pty) for mpremote; "
                                   "it resets like a board (soft reset, machine.reset)")
    sp.add_argument("--dir", type=Path, default=paths.BUILD / "vboard",
                    help="its directory: tty link and filesystem root")
    add_board(sp, on_desktop=True, choices=("sim", "esp32_devkitc"))
    sp.add_argument("--heap", default="128K",  # vboard.ESP32_HEAP, not imported at start-up
                    help="GC heap the board's code gets (default 128K: an ESP32's 110 KB "
                         "once grown, for this 64-bit port's larger objects; "
                         "the whole app from .mpy files, as `wearsafe hil --broker` runs it, "
                         "needs 256K)")
    sp = add("fuzz", cmd_fuzz, "fuzz the decoders facing the network (OTA images, CBOR, COSE, "
                               "MQTT from a hostile broker, the ingest) with generated inputs")
    sp.add_argument("--target", action="append", choices=("ota", "cbor", "cose", "mqtt",
                                                            "mqtt_tls", "ingest"),
                    help="one target (repeatable; default: all)")
    sp.add_argument("--count", type=int, default=100_000, help="inputs per target")
    sp.add_argument("--tls-count", type=int, default=1000,
                    help="connections for mqtt_tls (a TLS handshake each: about 0.3 s)")
    sp.add_argument("--seed", type=int, default=1, help="generator seed: same seed, same inputs")
    sp.add_argument("--corpus", type=Path,
                    help="keep new outcomes and crashes here, and replay them first")
    add("report-security", cmd_report_security, "run the tests of the threat table in "
                                                "docs/SECURITY.md and print one verdict per "
                                                "threat with the counts the tests recorded")
    add("bench", cmd_bench, "run the benchmarks in tests/bench and print their figures")
    return p


def main(argv: list[str] | None = None) -> int:
    args = resolve_aliases(parser().parse_args(argv))
    try:
        return int(args.func(args))
    except paths.ToolError as e:
        print(f"wearsafe {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"wearsafe {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
