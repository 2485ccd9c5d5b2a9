"""A throwaway PostgreSQL server for tests, from the distribution's own binaries (Debian's
`postgresql` package; `make postgres` installs it): `initdb` with password auth, `pg_ctl start`
on a free port of 127.0.0.1, `pg_ctl stop` and the directory removed by `stop()`.

PostgreSQL refuses to run as root. As root (CI, containers) the cluster belongs to the
unprivileged `postgres` user (or `nobody`) and lives in a temp dir of its own that this user can
reach, since pytest's temp dirs are root-only; otherwise it lives in the directory given.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg2

DEBIAN_BINARIES = "/usr/lib/postgresql/*/bin/initdb"
USERNAME = "dagster"
SERVICE_USERS = ("postgres", "nobody")


@dataclass(frozen=True)
class PostgresDatabase:
    host: str
    port: int
    db_name: str
    username: str
    password: str

    def dagster_env(self) -> dict[str, str]:
        """The variables dbx_assets/demo/production/dagster.yaml reads."""
        return {
            "DAGSTER_PG_HOST": self.host,
            "DAGSTER_PG_PORT": str(self.port),
            "DAGSTER_PG_DB": self.db_name,
            "DAGSTER_PG_USERNAME": self.username,
            "DAGSTER_PG_PASSWORD": self.password,
        }

    def connect(self) -> Any:
        return psycopg2.connect(
            host=self.host, port=self.port, dbname=self.db_name, user=self.username, password=self.password
        )


def find_bin_dir() -> Path:
    """The directory of `initdb` and `pg_ctl`: on PATH, else Debian's newest installed version."""
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).resolve().parent
    found = sorted(glob.glob(DEBIAN_BINARIES), key=lambda p: [int(n) for n in re.findall(r"\d+", p)])
    if not found:
        raise RuntimeError(
            f"PostgreSQL's initdb is neither on PATH nor at {DEBIAN_BINARIES}: run `make postgres` "
            "(installs Debian's postgresql package) or put a PostgreSQL bin directory on PATH."
        )
    return Path(found[-1]).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    def __init__(self, base_dir: Path):
        self.bin_dir = find_bin_dir()
        self._user = _service_user() if os.geteuid() == 0 else None
        # As root, pytest's temp dirs (mode 0700, owned by root) are out of the service user's reach.
        self.root = Path(tempfile.mkdtemp(prefix="dbx_pg_")) if self._user else base_dir / "postgres"
        self.root.mkdir(parents=True, exist_ok=True)
        self.data_dir = self.root / "data"
        self.log = self.root / "server.log"
        self.port = free_port()
        self._started = False

    def start(self, timeout_s: int = 120) -> PostgresDatabase:
        password = secrets.token_urlsafe(16)
        pwfile = self.root / "pwfile"
        pwfile.write_text(password + "\n")
        if self._user:
            for path in (self.root, pwfile):
                os.chown(path, self._user.pw_uid, self._user.pw_gid)
        self._run(
            "initdb",
            f"--pgdata={self.data_dir}",
            f"--username={USERNAME}",
            f"--pwfile={pwfile}",
            "--auth=scram-sha-256",
            "--encoding=UTF8",
            "--no-locale",
            "--no-sync",  # a throwaway cluster: durability is not what is tested
        )
        pwfile.unlink()
        server_options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.root} -c fsync=off"
        )
        self._started = True
        self._run("pg_ctl", "start", "-D", str(self.data_dir), "-l", str(self.log), "-w", "-t", str(timeout_s),
                  "-o", server_options)  # fmt: skip
        database = PostgresDatabase("127.0.0.1", self.port, "dagster", USERNAME, password)
        admin = psycopg2.connect(
            host=database.host, port=self.port, dbname="postgres", user=USERNAME, password=password
        )
        try:
            admin.autocommit = True  # CREATE DATABASE cannot run in a transaction
            with admin.cursor() as cur:
                cur.execute(f"CREATE DATABASE {database.db_name}")
        finally:
            admin.close()
        return database

    def stop(self) -> None:
        """Stops the server (fast shutdown: open sessions are ended) and removes its files."""
        try:
            if self._started:
                self._run("pg_ctl", "stop", "-D", str(self.data_dir), "-m", "fast", "-w", "-t", "60")
                self._started = False
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def tail(self) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_text(errors="replace")[-3000:]
        return ""

    def _run(self, program: str, *args: str) -> None:
        user = self._user
        result = subprocess.run(
            [str(self.bin_dir / program), *args],
            cwd=self.root,  # the service user must be able to enter its working directory
            user=user.pw_uid if user else None,
            group=user.pw_gid if user else None,
            extra_groups=[] if user else None,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=180,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{program} {' '.join(args)} exited {result.returncode}:\n{result.stdout}{result.stderr}\n{self.tail()}"
            )


def _service_user() -> pwd.struct_passwd:
    for name in SERVICE_USERS:
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise RuntimeError(f"PostgreSQL does not run as root and none of the users {SERVICE_USERS} exists")
