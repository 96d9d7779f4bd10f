"""ShopUnitOfWork: the shop's repositories inside the toolkit's unit of work, and the CRUD demo step."""

from __future__ import annotations

import io
from decimal import Decimal
from typing import Any

import pytest

from dbcli.errors import ConflictError, NotFoundError
from dbcli.shop.models import Address, Category, Order, OrderItem, Payment, Product, User, UserProfile
from dbcli.shop.unit_of_work import ShopUnitOfWork
from tests.fix_tables import Shop


def test_a_user_is_stored_with_profile_and_addresses(shop: Shop, shop_cfg: Any) -> None:
    with ShopUnitOfWork(shop_cfg) as uow:
        user = uow.users.add(User(email="carol@example.com", name="Carol",
                                  profile=UserProfile(bio="hi", marketing_opt_in=True),
                                  addresses=[Address(kind="billing", line1="2 Side St", city="Paris", country="FR")]))
    assert user.user_id == 3 and user.created_at is not None and user.addresses[0].address_id is not None
    with ShopUnitOfWork(shop_cfg) as uow:
        loaded = uow.users.get_by_email("CAROL@example.com")
    assert loaded is not None and loaded.name == "Carol" and loaded.tier == "standard"
    assert loaded.profile is not None and loaded.profile.bio == "hi" and loaded.profile.marketing_opt_in is True
    assert [a.city for a in loaded.addresses] == ["Paris"]


def test_repository_writes_roll_back_together(shop: Shop, shop_cfg: Any) -> None:
    with pytest.raises(RuntimeError), ShopUnitOfWork(shop_cfg) as uow:
        uow.users.add(User(email="dave@example.com", name="Dave"))
        uow.products.change_stock(1, -5)
        raise RuntimeError("boom")
    assert shop.scalar("SELECT count(*) FROM users") == 2
    assert shop.scalar("SELECT stock FROM products WHERE product_id = 1") == 5


def test_a_duplicate_user_is_a_conflict(shop: Shop, shop_cfg: Any) -> None:
    with pytest.raises(ConflictError) as err, ShopUnitOfWork(shop_cfg) as uow:
        uow.users.add(User(email="erin@example.com", name="Erin"))
        uow.users.add(User(email="ERIN@example.com", name="Erin again"))  # users_email_lower_key
    assert err.value.sqlstate == "23505" and "users_email_lower_key" in err.value.message
    assert shop.scalar("SELECT count(*) FROM users") == 2


def test_pooled_shop_unit_of_work(shop: Shop, shop_cfg: Any) -> None:
    from dbcli.postgres.connection import make_pool

    with make_pool(shop_cfg, min_size=1, max_size=2) as pool:
        with ShopUnitOfWork(pool, cfg=shop_cfg) as uow:
            uow.products.change_stock(2, -1)
        with pytest.raises(NotFoundError), ShopUnitOfWork(pool) as uow:
            uow.products.change_stock(2, -1)
            uow.products.change_stock(999, -1)
        assert pool.get_stats()["pool_available"] >= 1  # connections went back to the pool
    assert shop.scalar("SELECT stock FROM products WHERE product_id = 2") == 99


def test_repositories_return_dataclasses(shop: Shop, shop_cfg: Any) -> None:
    with ShopUnitOfWork(shop_cfg) as uow:
        product = uow.products.add(Product(sku="KETTLE-1", product_name="Kettle", price=Decimal("30.00"), stock=4,
                                           categories=[Category(name="Kitchen")]))
        order = uow.orders.add(Order(user_id=2, items=[OrderItem(product_id=product.product_id or 0, quantity=2,
                                                                 unit_price=product.price)],
                                     payments=[Payment(amount=Decimal("60.00"), method="paypal")]))
    with ShopUnitOfWork(shop_cfg) as uow:
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
    with ShopUnitOfWork(shop_cfg, encryptor=enc) as uow:
        uow.users.save_profile(1, UserProfile(phone="+44 20 7946 0000"))
    assert shop.scalar("SELECT phone FROM user_profiles").startswith("enc:v1:")
    with ShopUnitOfWork(shop_cfg, encryptor=enc) as uow:
        user = uow.users.get(1)
    assert user is not None and user.profile is not None and user.profile.phone == "+44 20 7946 0000"


def test_demo_steps(shop: Shop, shop_cfg: Any) -> None:
    from dbcli.output import Output
    from dbcli.shop.demo import orders, tables

    out = Output(fmt="json", stdout=io.StringIO(), stderr=io.StringIO())
    tables.step(shop_cfg, out)
    orders.step(shop_cfg, out)
    messages = out.stderr.getvalue()  # type: ignore[attr-defined]
    assert "$ dbcli table insert products" in messages and "deleted 1 row(s)" in messages
    assert "$ dbcli order place --user 1" in messages and "insufficient stock" in messages
    assert shop.scalar("SELECT count(*) FROM orders") == 1
    assert shop.scalar("SELECT count(*) FROM products WHERE sku = 'DEMO-CRUD-1'") == 0
