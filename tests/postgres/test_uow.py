"""UnitOfWork: commit on success, roll back on any exception, driver errors as dbcli errors."""

from __future__ import annotations

from typing import Any

import pytest

from dbcli.errors import ConflictError, NotFoundError
from dbcli.postgres.tables import Filter
from dbcli.postgres.uow import UnitOfWork
from tests.fix_tables import Shop


def test_commits_on_success(shop: Shop, shop_cfg: Any) -> None:
    with UnitOfWork(shop_cfg) as uow:
        (row,) = uow.table("users").insert([(1, {"email": "carol@example.com", "name": "Carol"})])
        assert uow.written() == ["users"]
    assert row["user_id"] == 3 and row["created_at"] is not None
    assert shop.scalar("SELECT name FROM users WHERE user_id = 3") == "Carol"


def test_rolls_back_on_any_exception(shop: Shop, shop_cfg: Any) -> None:
    with pytest.raises(RuntimeError), UnitOfWork(shop_cfg) as uow:
        uow.table("users").insert([(1, {"email": "dave@example.com", "name": "Dave"})])
        uow.table("products").update([Filter("product_id", "=", "1")], {"stock": "0"})
        raise RuntimeError("boom")
    assert shop.scalar("SELECT count(*) FROM users") == 2
    assert shop.scalar("SELECT stock FROM products WHERE product_id = 1") == 5


def test_driver_errors_become_dbcli_errors_after_rollback(shop: Shop, shop_cfg: Any) -> None:
    insert = "INSERT INTO users (email, name) VALUES (%s, %s)"
    with pytest.raises(ConflictError) as err, UnitOfWork(shop_cfg) as uow:
        uow.conn.execute(insert, ("erin@example.com", "Erin"))
        uow.conn.execute(insert, ("ERIN@example.com", "Erin again"))  # users_email_lower_key
    assert err.value.sqlstate == "23505" and "users_email_lower_key" in err.value.message
    assert shop.scalar("SELECT count(*) FROM users") == 2


def test_an_abandoned_result_stream_rolls_back_instead_of_hanging(shop: Shop, shop_cfg: Any) -> None:
    # a reader that fails mid-stream (dbcli table find | head) left the cursor holding the
    # connection lock, and the rollback waited for it forever
    with pytest.raises(BrokenPipeError), UnitOfWork(shop_cfg) as uow:
        uow.table("products").update([Filter("product_id", "=", "1")], {"stock": 42})
        _, rows = uow.table("products").find([])
        next(iter(rows))
        raise BrokenPipeError
    assert shop.query("SELECT stock FROM products WHERE product_id = 1") == [(5,)]


def test_pooled_unit_of_work(shop: Shop, shop_cfg: Any) -> None:
    from dbcli.postgres.connection import make_pool

    with make_pool(shop_cfg, min_size=1, max_size=2) as pool:
        with UnitOfWork(pool, cfg=shop_cfg) as uow:
            uow.table("products").update([Filter("product_id", "=", "2")], {"stock": "99"})
        with pytest.raises(NotFoundError), UnitOfWork(pool) as uow:
            uow.table("products").update([Filter("product_id", "=", "2")], {"stock": "98"})
            raise NotFoundError("product 999 not found")
        assert pool.get_stats()["pool_available"] >= 1  # connections went back to the pool
    assert shop.scalar("SELECT stock FROM products WHERE product_id = 2") == 99


def test_unit_of_work_on_an_open_connection(shop: Shop) -> None:
    import psycopg

    with psycopg.connect(shop.conninfo) as conn:
        with UnitOfWork(conn) as uow:
            assert uow.table("products").count([Filter("stock", ">", 4)]) == 2
        assert not conn.closed  # borrowed, not owned


def test_using_it_outside_a_with_block_fails_clearly(shop_cfg: Any) -> None:
    with pytest.raises(RuntimeError, match="not active"):
        _ = UnitOfWork(shop_cfg).conn
