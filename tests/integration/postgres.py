"""A throw-away PostgreSQL cluster for the team-server tests: ``initdb`` in a temporary folder,
``postgres`` on a free loopback port with its unix socket in that folder, one database, and
everything stopped and deleted at the end.

PostgreSQL refuses to run as root, so under root (CI containers) the cluster belongs to an
unprivileged account (``postgres`` if it exists, else ``nobody``) and its commands run through
``setpriv``. Where the binaries are missing or the cluster cannot start, the caller skips with
the reason.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# where Debian's postgresql packages put the server binaries, besides PATH
PG_DIRS = ("/usr/local/bin", *sorted(str(p) for p in Path("/usr/lib/postgresql").glob("*/bin")))
PG_USER = "geoensemble"  # the cluster's superuser (trust auth on loopback and its socket)


class PostgresUnavailable(RuntimeError):
    """The cluster cannot be made here; the message says why (a skip reason)."""


def pg_binary(name: str) -> str:
    """The path of PostgreSQL's ``name`` (``initdb``, ``postgres``), or raise why not."""
    found = shutil.which(name) or next(
        (f"{d}/{name}" for d in PG_DIRS if os.access(f"{d}/{name}", os.X_OK)), None
    )
    if found is None:
        raise PostgresUnavailable(
            f"PostgreSQL's {name} is not on PATH nor in {', '.join(PG_DIRS)} "
            "(apt-get install postgresql)"
        )
    return found


def _account() -> pwd.struct_passwd | None:
    """The unprivileged account to run PostgreSQL as when we are root, else None."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise PostgresUnavailable("running as root and neither a postgres nor a nobody account exists")


def _as_account(cmd: list[str], account: pwd.struct_passwd | None) -> list[str]:
    if account is None:
        return cmd
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        raise PostgresUnavailable("running as root and setpriv (util-linux) is missing")
    return [
        setpriv,
        f"--reuid={account.pw_uid}",
        f"--regid={account.pw_gid}",
        "--clear-groups",
        "--",
        *cmd,
    ]


@dataclass
class Cluster:
    """A running cluster: ``uri`` is the SQLAlchemy URI of its database (MLflow's form)."""

    uri: str
    port: int
    log: Path

    def create_database(self, name: str) -> str:
        """Create another (empty) database; return its URI."""
        import psycopg2

        conn = psycopg2.connect(f"host=127.0.0.1 port={self.port} user={PG_USER} dbname=postgres")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        conn.close()
        return self.uri.rpartition("/")[0] + f"/{name}"


def _wait_ready(proc: subprocess.Popen[bytes], dsn: str, log: Path, timeout: float) -> None:
    import psycopg2

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise PostgresUnavailable(
                f"postgres exited {proc.returncode}: {log.read_text()[-800:]}"
            )
        try:
            psycopg2.connect(dsn, connect_timeout=2).close()
            return
        except psycopg2.OperationalError:
            time.sleep(0.3)
    raise PostgresUnavailable(f"postgres not ready after {timeout} s: {log.read_text()[-800:]}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    import signal

    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)  # "fast" shutdown
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


@contextlib.contextmanager
def postgres_cluster(port: int, database: str = "mlflow") -> Iterator[Cluster]:
    """Make, start and (always) stop and delete a cluster serving ``database`` on
    ``127.0.0.1:port``.

    Raises
    ------
    PostgresUnavailable
        Binaries missing, no account to run as, ``initdb`` or the start failed.
    """
    import psycopg2

    initdb, postgres = pg_binary("initdb"), pg_binary("postgres")
    account = _account()
    # a folder of its own under /tmp (pytest's tmp is private to root: the account can't enter)
    home = Path(tempfile.mkdtemp(prefix="geoensemble-pg-"))
    try:
        data, sock, log = home / "data", home / "sock", home / "postgres.log"
        sock.mkdir()
        if account is not None:
            for p in (home, sock):
                os.chown(p, account.pw_uid, account.pw_gid)
        made = subprocess.run(
            _as_account(
                [initdb, "-D", str(data), "-U", PG_USER, "--auth=trust", "-E", "UTF8", "--no-sync"],
                account,
            ),
            capture_output=True,
            text=True,
            timeout=180,
            cwd=home,
        )
        if made.returncode:
            raise PostgresUnavailable(f"initdb failed: {(made.stderr or made.stdout)[-800:]}")
        serve = [postgres, "-D", str(data), "-h", "127.0.0.1", "-p", str(port), "-k", str(sock)]
        # a throw-away cluster: no durability wanted
        serve += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        with log.open("wb") as out:
            proc = subprocess.Popen(
                _as_account(serve, account),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=home,
            )
        try:
            admin = f"host=127.0.0.1 port={port} user={PG_USER} dbname=postgres"
            _wait_ready(proc, admin, log, timeout=60)
            conn = psycopg2.connect(admin)
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{database}"')
            conn.close()
            yield Cluster(f"postgresql+psycopg2://{PG_USER}@127.0.0.1:{port}/{database}", port, log)
        finally:
            _stop(proc)
    finally:
        shutil.rmtree(home, ignore_errors=True)
