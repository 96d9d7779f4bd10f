"""UnitOfWork (commit on success, roll back on any exception), repositories and the demo steps."""

from __future__ import annotations

import io
from decimal import Decimal
from typing import Any

import pytest

from dbcli.errors import ConflictError, NotFoundError
from dbcli.postgres.tables import Filter
from dbcli.postgres.uow import UnitOfWork
from dbcli.shop.models import Address, Category, Order, OrderItem, Payment, Product, User, UserProfile
from tests.fix_tables import Shop


def test_commits_on_success(shop: Shop, shop_cfg: Any) -> None:
    with UnitOfWork(shop_cfg) as uow:
        user = uow.users.add(User(email="carol@example.com", name="Carol",
                                  profile=UserProfile(bio="hi", marketing_opt_in=True),
                                  addresses=[Address(kind="billing", line1="2 Side St", city="Paris", country="FR")]))
    assert user.user_id == 3 and user.created_at is not None and user.addresses[0].address_id is not None
    with UnitOfWork(shop_cfg) as uow:
        loaded = uow.users.get_by_email("CAROL@example.com")
    assert loaded is not None and loaded.name == "Carol" and loaded.tier == "standard"
    assert loaded.profile is not None and loaded.profile.bio == "hi" and loaded.profile.marketing_opt_in is True
    assert [a.city for a in loaded.addresses] == ["Paris"]


def test_rolls_back_on_any_exception(shop: Shop, shop_cfg: Any) -> None:
    with pytest.raises(RuntimeError), UnitOfWork(shop_cfg) as uow:
        uow.users.add(User(email="dave@example.com", name="Dave"))
        uow.products.change_stock(1, -5)
        raise RuntimeError("boom")
    assert shop.scalar("SELECT count(*) FROM users") == 2
    assert shop.scalar("SELECT stock FROM products WHERE product_id = 1") == 5


def test_driver_errors_become_dbcli_errors_after_rollback(shop: Shop, shop_cfg: Any) -> None:
    with pytest.raises(ConflictError) as err, UnitOfWork(shop_cfg) as uow:
        uow.users.add(User(email="erin@example.com", name="Erin"))
        uow.users.add(User(email="ERIN@example.com", name="Erin again"))  # users_email_lower_key
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
            uow.products.change_stock(2, -1)
        with pytest.raises(NotFoundError), UnitOfWork(pool) as uow:
            uow.products.change_stock(2, -1)
            uow.products.change_stock(999, -1)
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


def test_repositories_return_dataclasses(shop: Shop, shop_cfg: Any) -> None:
    with UnitOfWork(shop_cfg) as uow:
        product = uow.products.add(Product(sku="KETTLE-1", product_name="Kettle", price=Decimal("30.00"), stock=4,
                                           categories=[Category(name="Kitchen")]))
        order = uow.orders.add(Order(user_id=2, items=[OrderItem(product_id=product.product_id or 0, quantity=2,
                                                                 unit_price=product.price)],
                                     payments=[Payment(amount=Decimal("60.00"), method="paypal")]))
    with UnitOfWork(shop_cfg) as uow:
        loaded = uow.products.get_by_sku("KETTLE-1")
        again = uow.orders.get(order.order_id or 0)
        mine = uow.orders.for_user(2)
        listed = uow.products.list()
        total = uow.orders.total(order.order_id or 0)
    assert isinstance(loaded, Product) and [c.name for c in loaded.categories] == ["Kitchen"]
    assert isinstance(again, Order) and again.total == Decimal("60.00") == total
    assert again.items == [OrderItem(product_id=4, quantity=2, unit_price=Decimal("30.00"), order_id=1)]
    assert again.payments[0].method == "paypal" and again.payments[0].status == "pending"
    assert [o.order_id for o in mine] == [1]
    assert [p.sku for p in listed] == ["LAMP-1", "MUG-1", "CHAIR-1", "KETTLE-1"]


def test_repositories_decrypt_and_encrypt(shop: Shop, shop_cfg: Any) -> None:
    from dbcli.encryption.fields import Encryptor, generate_key

    enc = Encryptor.with_key(generate_key(), columns={"user_profiles": ["phone"]})
    with UnitOfWork(shop_cfg, encryptor=enc) as uow:
        uow.users.save_profile(1, UserProfile(phone="+44 20 7946 0000"))
    assert shop.scalar("SELECT phone FROM user_profiles").startswith("enc:v1:")
    with UnitOfWork(shop_cfg, encryptor=enc) as uow:
        user = uow.users.get(1)
    assert user is not None and user.profile is not None and user.profile.phone == "+44 20 7946 0000"


def test_demo_steps(shop: Shop, shop_cfg: Any) -> None:
    from dbcli.output import Output
    from dbcli.postgres import tables
    from dbcli.shop import orders

    out = Output(fmt="json", stdout=io.StringIO(), stderr=io.StringIO())
    tables.demo_step(shop_cfg, out)
    orders.demo_step(shop_cfg, out)
    messages = out.stderr.getvalue()  # type: ignore[attr-defined]
    assert "$ dbcli table insert products" in messages and "deleted 1 row(s)" in messages
    assert "$ dbcli order place --user 1" in messages and "insufficient stock" in messages
    assert shop.scalar("SELECT count(*) FROM orders") == 1
    assert shop.scalar("SELECT count(*) FROM products WHERE sku = 'DEMO-CRUD-1'") == 0
