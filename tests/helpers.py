"""Helpers shared by the tests: run the CLI in-process or as a subprocess, write a config file."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def invoke(args: list[str], input: str | None = None) -> Result:
    """Run the CLI in-process, the way the console script does (error mapping included)."""
    from dbcli.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    old_stdin = sys.stdin
    sys.stdin = io.StringIO(input or "")
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(args)
    finally:
        sys.stdin = old_stdin
    return Result(int(code), out.getvalue(), err.getvalue())


def run_entry(args: list[str], *, env: dict[str, str] | None = None, input: str | None = None,
              timeout: float = 120) -> Result:
    """Run the installed entry point in a subprocess."""
    proc = subprocess.run([sys.executable, "-m", "dbcli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, input=input, timeout=timeout, check=False)
    return Result(proc.returncode, proc.stdout, proc.stderr)


def write_config(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path
