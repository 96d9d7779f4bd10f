"""A small shop for the table and order tests: the e-commerce schema with a few known rows."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fix_pg import PgServer

SHOP_SQL = """
INSERT INTO users (user_id, email, name, tier) OVERRIDING SYSTEM VALUE VALUES
    (1, 'alice@example.com', 'Alice', 'gold'),
    (2, 'bob@example.com', 'Bob', 'standard');
SELECT setval(pg_get_serial_sequence('users', 'user_id'), 2);
INSERT INTO addresses (user_id, kind, line1, city, country, is_default) VALUES
    (1, 'shipping', '1 Main St', 'Springfield', 'US', true);
INSERT INTO products (product_id, sku, product_name, price, stock) OVERRIDING SYSTEM VALUE VALUES
    (1, 'LAMP-1', 'Desk lamp', 19.90, 5),
    (2, 'MUG-1', 'Coffee mug', 7.50, 100),
    (3, 'CHAIR-1', 'Office chair', 149.00, 2);
SELECT setval(pg_get_serial_sequence('products', 'product_id'), 3);
"""


@dataclass
class Shop:
    config: Path  # ./dbcli.yaml pointing at the shop database
    conninfo: str

    def query(self, text: str, params: Any = None) -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(self.conninfo) as conn:
            return conn.execute(text, params).fetchall()

    def execute(self, text: str) -> None:
        """Run statements that return no rows (several at once are fine)."""
        import psycopg

        with psycopg.connect(self.conninfo) as conn:
            conn.execute(text.encode())

    def scalar(self, text: str, params: Any = None) -> Any:
        return self.query(text, params)[0][0]


@pytest.fixture
def shop(schema_config_file: Path, pg_server: PgServer, schema_db: str) -> Shop:
    """The e-commerce schema with users 1-2, products 1-3 (stock 5, 100, 2) and one address."""
    import psycopg

    conninfo = pg_server.conninfo(schema_db)
    with psycopg.connect(conninfo) as conn:
        conn.execute(SHOP_SQL.encode())
    return Shop(schema_config_file, conninfo)


@pytest.fixture
def shop_cfg(shop: Shop, load_cfg: Callable[..., Any]) -> Any:
    """The library Config of the shop database."""
    return load_cfg()
