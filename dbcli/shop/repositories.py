"""Data mappers for the e-commerce aggregates: SQL in, dataclasses out.

A repository works inside a :class:`~dbcli.postgres.uow.UnitOfWork`'s transaction and never commits
(:class:`~dbcli.shop.unit_of_work.ShopUnitOfWork` gives one of each).
Configured encrypted columns are encrypted on the way in and decrypted on the way out.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from dbcli.errors import NotFoundError
from dbcli.postgres.uow import UnitOfWork
from dbcli.shop.colocation import lines_carry_user
from dbcli.shop.models import Address, Category, Order, OrderItem, Payment, Product, User, UserProfile, from_row, to_row


class Repository:
    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow

    @property
    def conn(self) -> psycopg.Connection[Any]:
        return self.uow.conn

    def _rows(self, table: str, query: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[dict[str, Any]]:
        with self.conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(query, params).fetchall()
        return [self.uow.decrypt(table, r) for r in rows]

    def _one(self, table: str, query: str, params: Sequence[Any] | dict[str, Any] = ()) -> dict[str, Any] | None:
        rows = self._rows(table, query, params)
        return rows[0] if rows else None

    def _insert(self, table: str, values: dict[str, Any]) -> dict[str, Any]:
        """INSERT one row of ``table`` (a fixed name from this module) and return it as stored."""
        values = self.uow.encrypt(table, values)
        query = sql.SQL("INSERT INTO {} ({}) VALUES ({}) RETURNING *").format(
            sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, values)),
            sql.SQL(", ").join(sql.Placeholder() * len(values)))
        with self.conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(query, list(values.values())).fetchone()
        self.uow.touch(table)
        assert row is not None
        return self.uow.decrypt(table, row)


class UserRepository(Repository):
    """Users with their profile (1:1) and addresses (1:N)."""

    def get(self, user_id: int) -> User | None:
        row = self._one("users", "SELECT * FROM users WHERE user_id = %s", (user_id,))
        return self._load(row) if row else None

    def get_by_email(self, email: str) -> User | None:
        # lower(email) = lower(...) is what the users_email_lower_key index serves
        row = self._one("users", "SELECT * FROM users WHERE lower(email) = lower(%s)", (email,))
        return self._load(row) if row else None

    def exists(self, user_id: int) -> bool:
        return self.conn.execute("SELECT 1 FROM users WHERE user_id = %s", (user_id,)).fetchone() is not None

    def list(self, *, limit: int = 100) -> list[User]:
        """Users without their profile and addresses, oldest first."""
        return [from_row(User, r) for r in
                self._rows("users", "SELECT * FROM users ORDER BY user_id LIMIT %s", (limit,))]

    def _load(self, row: dict[str, Any]) -> User:
        user = from_row(User, row)
        profile = self._one("user_profiles", "SELECT * FROM user_profiles WHERE user_id = %s", (user.user_id,))
        user.profile = from_row(UserProfile, profile) if profile else None
        user.addresses = [from_row(Address, r) for r in self._rows(
            "addresses", "SELECT * FROM addresses WHERE user_id = %s ORDER BY address_id", (user.user_id,))]
        return user

    def add(self, user: User) -> User:
        """Store a new user with its profile and addresses; fills in ids and timestamps."""
        stored = self._insert("users", to_row(user))
        user.user_id, user.created_at, user.tier = stored["user_id"], stored["created_at"], stored["tier"]
        if user.profile is not None:
            self.save_profile(user.user_id, user.profile)
        for address in user.addresses:
            self.add_address(user.user_id, address)
        return user

    def save_profile(self, user_id: int, profile: UserProfile) -> UserProfile:
        """Insert or replace the user's profile."""
        profile.user_id = user_id
        values = self.uow.encrypt("user_profiles", {k: v for k, v in to_row(profile).items() if k != "updated_at"})
        values["user_id"] = user_id
        with self.conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(
                "INSERT INTO user_profiles (user_id, phone, date_of_birth, bio, marketing_opt_in)"
                " VALUES (%(user_id)s, %(phone)s, %(date_of_birth)s, %(bio)s, %(marketing_opt_in)s)"
                " ON CONFLICT (user_id) DO UPDATE SET phone = EXCLUDED.phone,"
                " date_of_birth = EXCLUDED.date_of_birth, bio = EXCLUDED.bio,"
                " marketing_opt_in = EXCLUDED.marketing_opt_in, updated_at = now() RETURNING updated_at",
                {"phone": None, "date_of_birth": None, "bio": None, "marketing_opt_in": False, **values},
            ).fetchone()
        self.uow.touch("user_profiles")
        profile.updated_at = row["updated_at"] if row else None
        return profile

    def add_address(self, user_id: int, address: Address) -> Address:
        address.user_id = user_id
        stored = self._insert("addresses", to_row(address))
        address.address_id, address.created_at = stored["address_id"], stored["created_at"]
        return address

    def address(self, user_id: int, address_id: int) -> Address | None:
        """The address if it belongs to this user."""
        row = self._one("addresses", "SELECT * FROM addresses WHERE user_id = %s AND address_id = %s",
                        (user_id, address_id))
        return from_row(Address, row) if row else None

    def default_address(self, user_id: int, kind: str = "shipping") -> Address | None:
        row = self._one("addresses", "SELECT * FROM addresses WHERE user_id = %s AND kind = %s AND is_default",
                        (user_id, kind))
        return from_row(Address, row) if row else None


class ProductRepository(Repository):
    """Products with their categories (M:N)."""

    def get(self, product_id: int) -> Product | None:
        row = self._one("products", "SELECT * FROM products WHERE product_id = %s", (product_id,))
        return self._with_categories(from_row(Product, row)) if row else None

    def get_by_sku(self, sku: str) -> Product | None:
        row = self._one("products", "SELECT * FROM products WHERE sku = %s", (sku,))
        return self._with_categories(from_row(Product, row)) if row else None

    def list(self, *, active_only: bool = True, limit: int = 100) -> list[Product]:
        rows = self._rows("products", "SELECT * FROM products WHERE active OR NOT %s ORDER BY product_id LIMIT %s",
                          (active_only, limit))
        return [from_row(Product, r) for r in rows]

    def _with_categories(self, product: Product) -> Product:
        product.categories = [from_row(Category, r) for r in self._rows(
            "categories", "SELECT c.* FROM categories c JOIN product_categories pc USING (category_id)"
            " WHERE pc.product_id = %s ORDER BY c.category_id", (product.product_id,))]
        return product

    def add(self, product: Product) -> Product:
        """Store a new product; categories that have ids are linked, new ones are created first."""
        stored = self._insert("products", to_row(product))
        product.product_id, product.created_at = stored["product_id"], stored["created_at"]
        for category in product.categories:
            if category.category_id is None:
                self.add_category(category)
            self.conn.execute("INSERT INTO product_categories (product_id, category_id) VALUES (%s, %s)"
                              " ON CONFLICT DO NOTHING", (product.product_id, category.category_id))
            self.uow.touch("product_categories")
        return product

    def add_category(self, category: Category) -> Category:
        stored = self._insert("categories", to_row(category))
        category.category_id = stored["category_id"]
        return category

    def lock(self, product_ids: Iterable[int]) -> dict[int, Product]:
        """Lock the products' rows until the transaction ends (``SELECT ... FOR UPDATE``).

        Rows are locked in product_id order, so two transactions locking overlapping sets
        always queue instead of deadlocking.
        """
        ids = sorted(set(product_ids))
        rows = self._rows("products", "SELECT * FROM products WHERE product_id = ANY(%s)"
                          " ORDER BY product_id FOR UPDATE", (ids,))
        return {r["product_id"]: from_row(Product, r) for r in rows}

    def change_stock(self, product_id: int, delta: int) -> int:
        """Add ``delta`` (negative to take) to the stock; returns the new stock."""
        row = self.conn.execute("UPDATE products SET stock = stock + %s WHERE product_id = %s RETURNING stock",
                                (delta, product_id)).fetchone()
        self.uow.touch("products")
        if row is None:
            raise NotFoundError(f"product {product_id} not found")
        return int(row[0])


class OrderRepository(Repository):
    """Orders with their items and payments."""

    def get(self, order_id: int) -> Order | None:
        row = self._one("orders", "SELECT * FROM orders WHERE order_id = %s", (order_id,))
        return self._load(row) if row else None

    def for_user(self, user_id: int, *, limit: int = 100) -> list[Order]:
        rows = self._rows("orders", "SELECT * FROM orders WHERE user_id = %s ORDER BY order_date DESC, order_id DESC"
                          " LIMIT %s", (user_id, limit))
        return [self._load(r) for r in rows]

    def _load(self, row: dict[str, Any]) -> Order:
        order = from_row(Order, row)
        order.items = [from_row(OrderItem, r) for r in self._rows(
            "order_items", "SELECT * FROM order_items WHERE order_id = %s ORDER BY product_id", (order.order_id,))]
        order.payments = [from_row(Payment, r) for r in self._rows(
            "payments", "SELECT * FROM payments WHERE order_id = %s ORDER BY payment_id", (order.order_id,))]
        return order

    def add(self, order: Order) -> Order:
        """Store a new order with its items and payments; fills in ids and dates."""
        stored = self._insert("orders", to_row(order))
        order.order_id, order.order_date, order.status = stored["order_id"], stored["order_date"], stored["status"]
        for item in order.items:
            item.order_id = order.order_id
        on_citus = lines_carry_user(self.conn)
        if order.items:
            with self.conn.cursor() as cur:
                if on_citus:  # the distribution column: the lines go to their order's shard group
                    cur.executemany("INSERT INTO order_items (order_id, product_id, quantity, unit_price, user_id)"
                                    " VALUES (%s, %s, %s, %s, %s)",
                                    [(i.order_id, i.product_id, i.quantity, i.unit_price, order.user_id)
                                     for i in order.items])
                else:
                    cur.executemany("INSERT INTO order_items (order_id, product_id, quantity, unit_price)"
                                    " VALUES (%s, %s, %s, %s)",
                                    [(i.order_id, i.product_id, i.quantity, i.unit_price) for i in order.items])
            self.uow.touch("order_items")
        for payment in order.payments:
            self.add_payment(order.order_id, payment, user_id=order.user_id if on_citus else None)
        return order

    def add_payment(self, order_id: int, payment: Payment, *, user_id: int | None = None) -> Payment:
        """Store a payment of the order; ``user_id`` (the order's) where payments carry it (Citus)."""
        payment.order_id = order_id
        row = to_row(payment)
        if user_id is not None:
            row["user_id"] = user_id
        stored = self._insert("payments", row)
        payment.payment_id, payment.created_at = stored["payment_id"], stored["created_at"]
        return payment

    def set_status(self, order_id: int, status: str) -> None:
        self.conn.execute("UPDATE orders SET status = %s WHERE order_id = %s", (status, order_id))
        self.uow.touch("orders")

    def total(self, order_id: int) -> Decimal:
        row = self.conn.execute("SELECT total FROM order_totals WHERE order_id = %s", (order_id,)).fetchone()
        return Decimal(row[0]) if row else Decimal("0.00")
