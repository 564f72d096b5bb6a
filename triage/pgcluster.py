"""A throwaway PostgreSQL cluster in a temporary folder, for the tests and ``bench/replicas.py``.

``Cluster.start()`` finds the server binaries (``initdb``/``pg_ctl`` on PATH, else Debian's
``/usr/lib/postgresql/<version>/bin``), runs ``initdb`` into a fresh temporary folder and starts the
server on a free loopback port with its socket in that folder, ``fsync`` off unless ``durable``
(nothing a test writes needs to survive the machine; a benchmark keeps PostgreSQL's defaults). PostgreSQL refuses to run as root, so as root the folder is given to the
``postgres`` system user (Debian's package creates it; else ``nobody``) and the binaries run through
``runuser``. ``stop()`` stops the server immediately and removes the folder. Nothing here is used by
the service itself: a centre runs its own server.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

from triage.errors import ConfigError


def server_bin() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl``, or None when no PostgreSQL server is installed."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(folder) / "initdb").exists() and (Path(folder) / "pg_ctl").exists():
            return Path(folder)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    """One throwaway cluster; ``url(db)`` is a ``postgresql://`` URL for a database in it."""

    def __init__(self, user: str = "triage", durable: bool = False) -> None:
        self.user = user
        self.durable = durable
        """False (tests): fsync and synchronous commit off. True (benchmarks): PostgreSQL's defaults."""
        self.port = 0
        self.folder: Path | None = None
        self._run_as: list[str] = []

    def _cmd(self, *args: str) -> list[str]:
        return [*self._run_as, *args]

    def start(self, timeout: float = 60.0) -> Cluster:
        bin_dir = server_bin()
        if bin_dir is None:
            raise ConfigError("no PostgreSQL server binaries (initdb, pg_ctl); on Debian: apt-get install postgresql")
        folder = Path(tempfile.mkdtemp(prefix="triage-pg-"))
        self.folder = folder
        if os.geteuid() == 0:
            owner = "postgres"
            try:
                pwd.getpwnam(owner)
            except KeyError:
                owner = "nobody"
            info = pwd.getpwnam(owner)
            os.chmod(folder, 0o755)
            os.chown(folder, info.pw_uid, info.pw_gid)
            runuser = shutil.which("runuser") or shutil.which("su")
            if runuser is None:
                raise ConfigError("running as root without runuser or su: cannot start PostgreSQL as another user")
            self._run_as = [runuser, "-u", owner, "--"] if runuser.endswith("runuser") else [runuser, owner, "-c"]
        data = folder / "data"
        self.port = _free_port()
        env = {**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
        try:
            self._check([*self._cmd(str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", self.user,
                                    "-E", "UTF8", "--locale=C.UTF-8")], env, timeout)
            options = f"-p {self.port} -k {folder} -c listen_addresses=127.0.0.1 -c max_connections=200"
            if not self.durable:
                options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            self._check([*self._cmd(str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options,
                                    "-l", str(folder / "server.log"), "start", "-w", "-t", str(int(timeout)))],
                        env, timeout + 10)
        except BaseException:
            self._remove()
            raise
        self._bin = bin_dir
        return self

    def _check(self, cmd: list[str], env: dict[str, str], timeout: float) -> None:
        if self._run_as and not self._run_as[0].endswith("runuser"):  # su owner -c "one command line"
            cmd = [*self._run_as, " ".join(_quote(c) for c in cmd[len(self._run_as):])]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd="/")
        if done.returncode != 0:
            tail = (done.stderr or done.stdout)[-800:]
            raise ConfigError(f"{Path(cmd[len(self._run_as)] if self._run_as else cmd[0]).name} failed "
                              f"({done.returncode}): {tail}")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str, template: str | None = None) -> str:
        """A new empty database (or a copy of ``template``); returns its URL."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            sql = f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")
            conn.execute(sql.encode())
        return self.url(name)

    def stop(self) -> None:
        if self.folder is None:
            return
        try:
            env = {**os.environ, "LC_ALL": "C.UTF-8"}
            self._check([*self._cmd(str(self._bin / "pg_ctl"), "-D", str(self.folder / "data"), "stop", "-m",
                                    "immediate", "-w")], env, 60)
        except (ConfigError, subprocess.TimeoutExpired, AttributeError):
            pass
        self._remove()

    def _remove(self) -> None:
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)
