"""Helpers shared by the tests: run the CLI in-process or as a subprocess, write a config file."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shlex
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


def dbcli_in_shell(script: str, args: list[str], *, namespace: bool = False) -> subprocess.CompletedProcess[str]:
    """Run SCRIPT then dbcli ARGS in bash (in a mount namespace of its own when asked)."""
    command = " ".join(shlex.quote(a) for a in [sys.executable, "-m", "dbcli", *args])
    argv = ["bash", "-c", f"set -e; {script}\nexec {command}"]
    if namespace:
        argv = ["unshare", "-m" if os.geteuid() == 0 else "-rm", *argv]
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False, env={**os.environ})


def can_mount(tmp_path: Path) -> bool:
    probe = tmp_path / "probe"
    probe.mkdir()
    done = dbcli_in_shell(f"mount -t tmpfs -o size=64k tmpfs {probe}", ["--version"], namespace=True)
    return done.returncode == 0


# a small shop with known rows: reports and the cache check exact results against it
KNOWN_SQL = """
INSERT INTO users (user_id, email, name, tier, created_at) OVERRIDING SYSTEM VALUE VALUES
  (1, 'ann@example.com', 'Ann', 'gold', '2024-01-01 00:00+00'),
  (2, 'bob@example.com', 'Bob', 'silver', '2024-01-02 00:00+00'),
  (3, 'cid@example.com', 'Cid', 'standard', '2024-01-03 00:00+00'),
  (4, 'dee@example.com', 'Dee', 'standard', '2024-06-01 00:00+00');
INSERT INTO categories (category_id, name, parent_id) OVERRIDING SYSTEM VALUE VALUES
  (1, 'Books', NULL), (2, 'Fiction', 1), (3, 'Electronics', NULL), (4, 'Toys', NULL);
INSERT INTO products (product_id, sku, product_name, price, stock, active) OVERRIDING SYSTEM VALUE VALUES
  (1, 'BK-1', 'Novel', 12.00, 10, true), (2, 'EL-1', 'Laptop', 950.00, 3, true),
  (3, 'EL-2', 'Phone', 480.00, 5, true), (4, 'TY-1', 'Puzzle', 20.00, 7, true),
  (5, 'BK-2', 'Cookbook', 15.00, 4, true), (6, 'EL-3', 'Old Radio', 30.00, 0, false);
INSERT INTO product_categories (product_id, category_id) VALUES
  (1, 1), (1, 2), (2, 3), (3, 3), (4, 4), (5, 1), (6, 3);
INSERT INTO orders (order_id, user_id, order_date, status) OVERRIDING SYSTEM VALUE VALUES
  (1, 1, '2024-03-01 10:00+00', 'delivered'),
  (2, 1, '2024-03-05 12:00+00', 'cancelled'),
  (3, 2, '2024-03-05 23:30+00', 'paid'),
  (4, 2, '2024-03-10 09:00+00', 'shipped'),
  (5, 1, '2024-01-15 08:00+00', 'delivered');
INSERT INTO order_items (order_id, product_id, quantity, unit_price) VALUES
  (1, 1, 2, 10.00), (1, 2, 1, 900.00), (2, 3, 1, 500.00), (3, 3, 2, 450.00), (3, 5, 1, 15.00),
  (4, 1, 1, 12.00), (5, 5, 3, 15.00);
INSERT INTO payments (payment_id, order_id, amount, method, status, paid_at, created_at)
OVERRIDING SYSTEM VALUE VALUES
  (1, 1, 920.00, 'card', 'completed', '2024-03-01 10:05+00', '2024-03-01 10:04+00'),
  (2, 3, 900.00, 'paypal', 'completed', '2024-03-06 08:00+00', '2024-03-06 07:59+00'),
  (3, 2, 500.00, 'card', 'completed', '2024-03-05 12:10+00', '2024-03-05 12:09+00'),
  (4, 4, 12.00, 'card', 'failed', NULL, '2024-03-10 09:01+00'),
  (5, 5, 45.00, 'card', 'completed', '2024-01-15 08:05+00', '2024-01-15 08:04+00');
"""
