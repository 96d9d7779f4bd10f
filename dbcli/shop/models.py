"""The e-commerce aggregates as plain dataclasses: they know nothing of SQL or connections.

Repositories (:mod:`dbcli.shop.repositories`) load and store them; ids and server-set timestamps are
None until the object has been stored.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass
class UserProfile:
    user_id: int | None = None
    phone: str | None = None
    date_of_birth: str | None = None
    bio: str | None = None
    marketing_opt_in: bool = False
    updated_at: dt.datetime | None = None


@dataclass
class Address:
    kind: str  # shipping | billing
    line1: str
    city: str
    country: str  # ISO 3166-1 alpha-2
    line2: str | None = None
    postal_code: str | None = None
    is_default: bool = False
    address_id: int | None = None
    user_id: int | None = None
    created_at: dt.datetime | None = None


@dataclass
class User:
    email: str
    name: str
    tier: str = "standard"
    user_id: int | None = None
    created_at: dt.datetime | None = None
    profile: UserProfile | None = None
    addresses: list[Address] = field(default_factory=list)


@dataclass
class Category:
    name: str
    parent_id: int | None = None
    category_id: int | None = None


@dataclass
class Product:
    sku: str
    product_name: str
    price: Decimal
    stock: int = 0
    description: str | None = None
    active: bool = True
    product_id: int | None = None
    created_at: dt.datetime | None = None
    categories: list[Category] = field(default_factory=list)


@dataclass
class OrderItem:
    product_id: int
    quantity: int
    unit_price: Decimal  # captured at checkout; products.price may change later
    order_id: int | None = None

    @property
    def line_total(self) -> Decimal:
        return self.unit_price * self.quantity


@dataclass
class Payment:
    amount: Decimal
    method: str | None = None
    status: str = "pending"
    paid_at: dt.datetime | None = None
    payment_id: int | None = None
    order_id: int | None = None
    created_at: dt.datetime | None = None


@dataclass
class Order:
    user_id: int
    status: str = "pending"
    shipping_address_id: int | None = None
    order_id: int | None = None
    order_date: dt.datetime | None = None
    items: list[OrderItem] = field(default_factory=list)
    payments: list[Payment] = field(default_factory=list)

    @property
    def total(self) -> Decimal:
        return sum((i.line_total for i in self.items), Decimal("0.00"))

    def as_dict(self) -> dict[str, Any]:
        """For output: the stored fields, the total and the lines with their totals."""
        data = dataclasses.asdict(self)
        data["total"] = self.total
        for item, line in zip(data["items"], self.items, strict=True):
            item["line_total"] = line.line_total
        return data


def from_row(cls: type[T], row: dict[str, Any]) -> T:
    """Build ``cls`` from a row, ignoring columns the dataclass does not declare."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in row.items() if k in names})


# fields that hold other aggregates' rows, not columns of the object's own table
CHILDREN = frozenset({"profile", "addresses", "categories", "items", "payments"})


def to_row(obj: Any, *, exclude: set[str] | frozenset[str] = frozenset()) -> dict[str, Any]:
    """The column fields of ``obj`` (children left out), skipping unset ids and ``exclude``."""
    out = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if f.name in exclude or f.name in CHILDREN:
            continue
        if value is None and (f.name.endswith("_id") or f.name in ("created_at", "updated_at", "order_date")):
            continue  # let the database assign ids and timestamps
        out[f.name] = value
    return out
