"""The sample catalog: a fixed category tree, products in its leaves, and their category links."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from dbcli.shop.seed.rows import CHUNK, DAY, NULL, Chunk, SampleData, money, timestamp

# Nested dict = subcategories, list = a leaf with the product nouns sold in it. The same names
# under different parents (Shirts, Shoes, Cooking) show that only siblings must differ.
CATEGORY_TREE: dict[str, Any] = {
    "Electronics": {
        "Computers": {"Laptops": ["Laptop", "Ultrabook"], "Monitors": ["Monitor", "Display"],
                      "Keyboards": ["Keyboard", "Keypad"]},
        "Audio": {"Headphones": ["Headphones", "Earbuds"], "Speakers": ["Speaker", "Soundbar"]},
        "Phones": ["Smartphone", "Phone Case", "Charger"],
    },
    "Home & Kitchen": {
        "Cookware": ["Pan", "Pot", "Kettle"],
        "Furniture": {"Chairs": ["Chair", "Stool"], "Desks": ["Desk", "Standing Desk"]},
        "Lighting": ["Lamp", "Light Strip"],
    },
    "Books": {"Fiction": ["Novel", "Short Stories"], "Science": ["Textbook", "Field Guide"],
              "Cooking": ["Cookbook"]},
    "Sports": {"Running": ["Running Shoes", "Sports Watch"], "Cycling": ["Bike Helmet", "Bike Light"],
               "Camping": ["Tent", "Sleeping Bag", "Lantern"]},
    "Toys": {"Board Games": ["Board Game", "Card Game"], "Puzzles": ["Puzzle", "Brain Teaser"]},
    "Clothing": {"Men": {"Shirts": ["Shirt", "Polo"], "Shoes": ["Sneakers", "Boots"]},
                 "Women": {"Shirts": ["Blouse", "Shirt"], "Shoes": ["Sneakers", "Sandals"]},
                 "Cooking": ["Apron"]},
    "Sale": [],  # products are linked here in addition to their own category (many-to-many)
}
ADJECTIVES = ["Classic", "Compact", "Deluxe", "Eco", "Essential", "Ultra", "Smart", "Pro", "Lite",
              "Vintage", "Rugged", "Premium", "Everyday", "Travel", "Wireless", "Modern"]

PRODUCT_COLUMNS = ("product_id", "sku", "product_name", "description", "price", "stock", "active", "created_at")


def catalog_chunks(data: SampleData) -> Iterator[Chunk]:
    """categories (all at once), then products and product_categories, CHUNK products at a time."""
    rng, base = data.rng, data.base
    cats: list[str] = []
    leaves: list[tuple[int, list[str]]] = []
    top: dict[str, int] = {}

    def walk(tree: dict[str, Any], parent: int | None) -> None:
        for name, sub in tree.items():
            cats.append(f"{len(cats) + 1}\t{name}\t{parent or NULL}\n")
            cid = len(cats)
            if parent is None:
                top[name] = cid
            if isinstance(sub, dict):
                walk(sub, cid)
            elif sub:
                leaves.append((cid, sub))

    walk(CATEGORY_TREE, None)
    sale_id = top["Sale"]
    data.categories = len(cats)
    yield data.emit("categories", ("category_id", "name", "parent_id"), cats)
    for start in range(1, data.n_products + 1, CHUNK):
        products, links = [], []
        for pid in range(start, min(start + CHUNK, data.n_products + 1)):
            cid, nouns = rng.choice(leaves)
            adjective, noun = rng.choice(ADJECTIVES), rng.choice(nouns)
            cents = max(199, min(500000, round(rng.lognormvariate(3.2, 0.9) * 100)))
            data.price_cents.append(cents)
            stock = 0 if rng.random() < 0.05 else rng.randint(1, 500)
            active = "f" if rng.random() < 0.05 else "t"
            desc = f"{adjective} {noun.lower()} for everyday use." if rng.random() < 0.7 else NULL
            created = base - rng.randint(60 * DAY, 3 * 365 * DAY)
            products.append(f"{pid}\tSKU-{pid:07d}\t{adjective} {noun} {rng.randint(100, 999)}\t{desc}"
                            f"\t{money(cents)}\t{stock}\t{active}\t{timestamp(created)}\n")
            links.append(f"{pid}\t{cid}\n")
            if rng.random() < 0.15:
                links.append(f"{pid}\t{sale_id}\n")
        yield data.emit("products", PRODUCT_COLUMNS, products)
        yield data.emit("product_categories", ("product_id", "category_id"), links,
                        ("catalog", len(data.price_cents), data.n_products))
