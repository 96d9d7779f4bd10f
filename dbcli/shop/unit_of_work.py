"""The shop's unit of work: the toolkit's :class:`~dbcli.postgres.uow.UnitOfWork` with the shop's
repositories working inside its transaction.

    with ShopUnitOfWork(cfg) as uow:
        user = uow.users.get(1)
        uow.products.change_stock(3, -1)
    # committed here; an exception anywhere in the block rolls everything back
"""

from __future__ import annotations

from dbcli.postgres.uow import UnitOfWork
from dbcli.shop.repositories import OrderRepository, ProductRepository, UserRepository


class ShopUnitOfWork(UnitOfWork):
    """A unit of work with ``users``, ``products`` and ``orders`` repositories."""

    @property
    def users(self) -> UserRepository:
        return UserRepository(self)

    @property
    def products(self) -> ProductRepository:
        return ProductRepository(self)

    @property
    def orders(self) -> OrderRepository:
        return OrderRepository(self)
