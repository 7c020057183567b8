"""The `labelwise` command.

labelwise demo      start the embedded service, train on generated data, predict
labelwise up        embedded default: API + one worker, SQLite, no broker server
labelwise migrate   apply the Alembic migrations to LABELWISE_DATABASE_URL
labelwise api       serve HTTP (production)
labelwise worker    run one Celery worker (production)
labelwise keys create --owner NAME   print a new API key
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

log = logging.getLogger("labelwise")

ROOT = Path(__file__).resolve().parents[1]


def _apply_data_dir(args: argparse.Namespace) -> None:
    # Settings read the environment, so --data-dir must land there before they load;
    # child processes (the embedded worker) inherit it.
    if getattr(args, "data_dir", None):
        os.environ["LABELWISE_DATA_DIR"] = str(Path(args.data_dir).resolve())


def migrate() -> None:
    from alembic.config import Config

    from alembic import command
    from service.settings import get_settings

    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "alembic"))
    config.set_main_option(
        "sqlalchemy.url", settings.resolved_database_url.replace("%", "%%")
    )
    command.upgrade(config, "head")
    log.info("db.migrated url=%s", _redact(settings.resolved_database_url))


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def cmd_migrate(args: argparse.Namespace) -> None:
    migrate()


def cmd_api(args: argparse.Namespace) -> None:
    import uvicorn

    uvicorn.run(
        "service.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=getattr(args, "workers", 1),
        log_level="warning",
        access_log=False,
    )


def cmd_worker(args: argparse.Namespace) -> None:
    from service.settings import get_settings
    from workers.celery_app import app

    settings = get_settings()
    argv = [
        "worker",
        "--loglevel=INFO",
        f"--concurrency={args.concurrency}",
        f"--queues={settings.training_queue}",
        "--without-gossip",
        "--without-mingle",
    ]
    if args.hostname:
        argv.append(f"--hostname={args.hostname}")
    # The reaper runs beside the worker as its own process (see workers.reaper for why
    # not a thread); it exits when this process does.
    reaper = subprocess.Popen(
        [sys.executable, "-m", "workers.reaper"], env=os.environ.copy()
    )
    try:
        app.worker_main(argv)
    finally:
        reaper.terminate()


def cmd_up(args: argparse.Namespace) -> None:
    from service.settings import get_settings

    settings = get_settings()
    if not settings.is_embedded:
        log.warning("up.not_embedded database_url is set; `up` still runs one worker")
    migrate()
    worker = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "worker"], env=os.environ.copy()
    )
    log.info(
        "up.started url=http://%s:%d data_dir=%s worker_pid=%d auth=%s",
        args.host,
        args.port,
        settings.data_dir,
        worker.pid,
        "on" if settings.auth_enabled else "off (embedded default; LABELWISE_AUTH=on)",
    )
    try:
        cmd_api(args)
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()


def cmd_keys_create(args: argparse.Namespace) -> None:
    from service.auth.keys import create_key
    from service.db import session_scope

    with session_scope() as session:
        key = create_key(session, args.owner)
    # The key is the line's last word: scripts take it with `awk '{print $NF}'`.
    print(f"created API key for owner {args.owner}: {key}")


def cmd_demo(args: argparse.Namespace) -> None:
    from service.demo import run_demo

    sys.exit(run_demo(args))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="labelwise", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def serving(p: argparse.ArgumentParser, host: str) -> None:
        p.add_argument("--host", default=host)
        p.add_argument("--port", type=int, default=8000)

    up = sub.add_parser(
        "up", help="embedded default: API + worker, nothing else needed"
    )
    serving(up, "127.0.0.1")
    up.add_argument("--data-dir", help="where the database, broker and files live")
    up.set_defaults(func=cmd_up)

    api = sub.add_parser("api", help="serve the HTTP API")
    serving(api, "0.0.0.0")
    api.add_argument(
        "--workers", type=int, default=1, help="API processes (each caches models)"
    )
    api.set_defaults(func=cmd_api)

    worker = sub.add_parser("worker", help="run one Celery worker")
    worker.add_argument("--concurrency", type=int, default=1)
    worker.add_argument("--hostname", help="Celery node name (default: host name)")
    worker.set_defaults(func=cmd_worker)

    mig = sub.add_parser("migrate", help="apply database migrations")
    mig.set_defaults(func=cmd_migrate)

    keys = sub.add_parser("keys", help="manage API keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="create a key; prints it once")
    create.add_argument("--owner", required=True, help="who the key acts for")
    create.set_defaults(func=cmd_keys_create)

    demo = sub.add_parser(
        "demo", help="train on a generated dataset (or --csv) end to end"
    )
    demo.add_argument(
        "--csv", type=Path, help="a CSV of yours instead of generated data"
    )
    demo.add_argument("--labels", help="label columns of --csv, comma-separated")
    demo.add_argument(
        "--test-csv", type=Path, help="optional test CSV with the same columns"
    )
    demo.add_argument("--epochs", type=int, default=15)
    demo.add_argument(
        "--data-dir", help="keep the demo's data here (default: a temp dir)"
    )
    demo.add_argument("--port", type=int, default=0, help="0 picks a free port")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> None:
    # OpenMP threads that spin while waiting steal the other core from the API, the
    # reaper and other jobs: on a busy 2-core machine the same epoch measured 25-58 s
    # spinning and 3-8 s passive. Set before torch loads; an explicit value wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from service.logs import setup_logging
    from service.settings import get_settings

    args = build_parser().parse_args(argv)
    _apply_data_dir(args)
    get_settings.cache_clear()
    setup_logging(get_settings().log_format)
    args.func(args)


if __name__ == "__main__":
    main()
