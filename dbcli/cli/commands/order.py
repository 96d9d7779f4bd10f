"""dbcli order place | show"""

from __future__ import annotations

from typing import Annotated

import typer

from dbcli.cli.state import FormatOpt, QuietOpt, state

app = typer.Typer(help="Place and show orders (the e-commerce schema), all or nothing.", no_args_is_help=True)


@app.command("place")
def place(
    ctx: typer.Context,
    user: Annotated[int, typer.Option("--user", "-u", help="The customer's user_id.", show_default=False)],
    item: Annotated[list[str], typer.Option("--item", "-i", help="PRODUCT_ID:QTY; repeatable.",
                                            show_default=False)],
    method: Annotated[str | None, typer.Option("--method", help="Payment method: card, paypal, bank_transfer, "
                      "gift_card or cash_on_delivery.", show_default=False)] = None,
    address: Annotated[int | None, typer.Option("--address", help="Shipping address_id of this user (default: "
                       "the user's default shipping address).", show_default=False)] = None,
    fmt: FormatOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Place an order in one transaction: lock products, check and take stock, store order, items and payment.

    Unknown user or product: exit 6. Insufficient stock or an inactive product: exit 7. On any
    failure nothing is changed.

    Example:
        dbcli order place --user 1 --item 3:2 --item 5:1 --method card
    """
    from dbcli.shop import orders

    st = state(ctx)
    out = st.output(fmt, quiet)
    items = [orders.parse_item(i) for i in item]
    order = orders.place(st.config, user, items, method=method, address_id=address)
    orders.show(out, order)
    out.info(f"order {order.order_id} placed: {len(order.items)} line(s), total {order.total}")


@app.command("show")
def show(
    ctx: typer.Context,
    order_id: Annotated[int, typer.Argument(help="The order_id.", show_default=False)],
    fmt: FormatOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Show an order with its items, total and payments (exit 6 if there is none).

    Example:
        dbcli order show 42 --format json
    """
    from dbcli.shop import orders

    st = state(ctx)
    orders.show(st.output(fmt, quiet), orders.get_order(st.config, order_id))
