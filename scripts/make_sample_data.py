#!/usr/bin/env python3
"""Generate the retail sample data behind the SQL tools (``plugins/sql/sample_data/``).

Deterministic: a fixed seed, only ``random.Random.random()`` (whose Mersenne Twister output
for an integer seed is stable across Python versions) and integer cents for money, so two
runs write byte-identical files. Standard library only; runs in well under a second.

    python scripts/make_sample_data.py                 # writes plugins/sql/sample_data/
    python scripts/make_sample_data.py --out DIR       # somewhere else (the tests do this)

The story the data tells is written in ``plugins/sql/sample_data/README.md``; the tests in
``tests/test_sample_data.py`` hold the generated files to it.
"""

from __future__ import annotations

import argparse
import bisect
import csv
import random
from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import Any, TypeVar

SEED = 20250101
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "plugins" / "sql" / "sample_data"

FIRST_DAY = date(2025, 1, 1)  # orders span 2025Q1 ..
LAST_DAY = date(2026, 9, 30)  # .. 2026Q3
PENDING_FROM = date(2026, 9, 10)  # orders after this may still be pending

REGIONS = [  # region_id, name, manager
    (1, "North", "Maren Holt"),
    (2, "South", "Diego Ferreira"),
    (3, "East", "Priya Natarajan"),
    (4, "West", "Jonas Whitaker"),
    (5, "Central", "Aiko Tanaka"),
]

# category -> products (name, unit price in cents)
CATALOG: dict[str, list[tuple[str, int]]] = {
    "widgets": [
        ("Basic Widget", 499),
        ("Widget Pro", 1299),
        ("Mini Widget", 349),
        ("Widget XL", 1899),
        ("Steel Widget", 999),
        ("Widget Kit", 2499),
        ("Eco Widget", 799),
    ],
    "gadgets": [
        ("Pocket Gadget", 2999),
        ("Gadget Hub", 8999),
        ("Smart Gadget", 11999),
        ("Travel Gadget", 4499),
        ("Gadget Dock", 5999),
        ("Solar Gadget", 7499),
        ("Gadget Lite", 3499),
    ],
    "tools": [
        ("Claw Hammer", 1899),
        ("Screwdriver Set", 2499),
        ("Cordless Drill", 7999),
        ("Tape Measure", 999),
        ("Socket Wrench Set", 4599),
        ("Utility Knife", 799),
        ("Level 24in", 1599),
    ],
    "electronics": [
        ("USB-C Charger", 2499),
        ("Bluetooth Speaker", 5999),
        ("Wireless Earbuds", 7999),
        ("Smart Plug", 1999),
        ("HD Webcam", 4999),
        ("Power Bank", 3499),
        ("Noise-Cancelling Headphones", 19999),
    ],
    "garden": [
        ("Garden Hose 50ft", 3499),
        ("Pruning Shears", 1799),
        ("Seed Starter Kit", 1299),
        ("Watering Can", 1499),
        ("Raised Bed Frame", 8999),
        ("Compost Bin", 5499),
    ],
    "office": [
        ("Ballpoint Pens 12pk", 599),
        ("Desk Organizer", 1899),
        ("Notebook A5", 449),
        ("Ergonomic Mouse", 2999),
        ("Monitor Stand", 3999),
        ("Stapler", 1099),
    ],
}

SEGMENT_QUANTITY = {"consumer": (1, 3), "business": (2, 8), "enterprise": (5, 20)}
SEGMENT_DISCOUNT_PCT = {"consumer": 0, "business": 0, "enterprise": 10}

FIRST_NAMES = [
    "Alex",
    "Bea",
    "Carlos",
    "Dana",
    "Eli",
    "Farah",
    "Gus",
    "Hana",
    "Ivan",
    "Jade",
    "Kofi",
    "Lena",
    "Milo",
    "Nadia",
    "Omar",
    "Pia",
    "Quinn",
    "Rosa",
    "Sami",
    "Tara",
    "Uma",
    "Victor",
    "Wen",
    "Yara",
    "Zane",
]
LAST_NAMES = [
    "Abbott",
    "Baker",
    "Chen",
    "Diaz",
    "Evans",
    "Fischer",
    "Garcia",
    "Haddad",
    "Ito",
    "Jensen",
    "Kowalski",
    "Lopez",
    "Moreau",
    "Nguyen",
    "Okafor",
    "Patel",
    "Quist",
    "Rossi",
    "Silva",
    "Turner",
]
COMPANY_WORDS = [
    "Acme",
    "Blue Harbor",
    "Cedar",
    "Delta",
    "Evergreen",
    "Foxglove",
    "Granite",
    "Harbor Light",
    "Ironwood",
    "Juniper",
    "Keystone",
    "Lakeside",
    "Maple",
    "Northstar",
    "Oakridge",
    "Pinecrest",
    "Quarry",
    "Redwood",
    "Summit",
    "Tidewater",
]
COMPANY_KINDS = [
    "Supply",
    "Builders",
    "Logistics",
    "Foods",
    "Labs",
    "Outfitters",
    "Studios",
    "Holdings",
    "Systems",
    "Traders",
]

T = TypeVar("T")


class Dice:
    """Everything random, built on ``Random.random()`` alone (stable across versions)."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)

    def chance(self, p: float) -> bool:
        return self._rng.random() < p

    def between(self, lo: int, hi: int) -> int:
        """An integer in [lo, hi]."""
        return lo + int(self._rng.random() * (hi - lo + 1))

    def pick(self, items: Sequence[T]) -> T:
        return items[int(self._rng.random() * len(items))]

    def weighted(self, items: Sequence[T], weights: Sequence[float]) -> T:
        return items[self.index(running_total(weights))]

    def index(self, cumulative: Sequence[float], end: int | None = None) -> int:
        """A random index below ``end``, weighted by the running totals ``cumulative``."""
        end = len(cumulative) if end is None else end
        return bisect.bisect_right(cumulative, self._rng.random() * cumulative[end - 1], 0, end)

    def day(self, first: date, last: date) -> date:
        return first + timedelta(days=self.between(0, (last - first).days))


def running_total(weights: Sequence[float]) -> list[float]:
    totals, total = [], 0.0
    for weight in weights:
        total += weight
        totals.append(total)
    return totals


def quarter_of(day: date) -> str:
    return f"{day.year}Q{(day.month - 1) // 3 + 1}"


def quarter_index(day: date) -> int:
    """0 for 2025Q1 .. 6 for 2026Q3."""
    return (day.year - 2025) * 4 + (day.month - 1) // 3


def money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def make_products() -> list[dict[str, Any]]:
    products = []
    for category, items in CATALOG.items():
        for name, cents in items:
            products.append(
                {
                    "product_id": len(products) + 1,
                    "name": name,
                    "category": category,
                    "unit_price": cents,
                }
            )
    return products


def make_customers(dice: Dice) -> list[dict[str, Any]]:
    """260 long-standing customers everywhere, then the West expansion cohort of 2026H1."""
    drafts: list[tuple[date, str, str]] = []  # (signup, region, segment)
    region_names = [name for _, name, _ in REGIONS]
    for _ in range(260):
        region = dice.weighted(region_names, [0.30, 0.19, 0.20, 0.12, 0.19])
        segment = dice.weighted(["consumer", "business", "enterprise"], [0.65, 0.27, 0.08])
        drafts.append((dice.day(date(2023, 1, 1), date(2025, 12, 31)), region, segment))
    for _ in range(40):  # the West expansion: a new store network opens in January 2026
        segment = dice.weighted(["consumer", "business", "enterprise"], [0.60, 0.32, 0.08])
        drafts.append((dice.day(date(2026, 1, 5), date(2026, 6, 30)), "West", segment))
    drafts.sort(key=lambda d: d[0])  # customer ids follow signup order

    region_id = {name: rid for rid, name, _ in REGIONS}
    used: set[str] = set()
    customers = []
    for signup, region, segment in drafts:
        while True:
            if segment == "consumer":
                name = f"{dice.pick(FIRST_NAMES)} {dice.pick(LAST_NAMES)}"
            else:
                name = f"{dice.pick(COMPANY_WORDS)} {dice.pick(COMPANY_KINDS)}"
                if segment == "enterprise":
                    name += " Inc"
            if name not in used:
                used.add(name)
                break
        customers.append(
            {
                "customer_id": len(customers) + 1,
                "name": name,
                "region_id": region_id[region],
                "region": region,
                "segment": segment,
                "signup_date": signup,
            }
        )
    return customers


def make_orders(dice: Dice, customers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """2,000 orders, each placed by a customer who had already signed up: volume grows with
    the customer base, peaks for the holidays, and the West cohort orders eagerly."""
    signups = [c["signup_date"] for c in customers]  # sorted: ids follow signup order
    activity = []
    for c in customers:
        weight = {"consumer": 1.0, "business": 1.3, "enterprise": 1.1}[c["segment"]]
        if c["signup_date"] >= date(2026, 1, 1):
            weight *= 1.5  # the expansion cohort is new and keen
        activity.append(weight)
    cumulative = running_total(activity)

    # A day's share of the orders follows the activity of the customers signed up by then,
    # with a holiday peak in November and December.
    days, day_weights = [], []
    day = FIRST_DAY
    while day <= LAST_DAY:
        weight = cumulative[bisect.bisect_left(signups, day) - 1]
        if day.month in (11, 12):
            weight *= 1.5
        days.append(day)
        day_weights.append(weight)
        day += timedelta(days=1)

    day_totals = running_total(day_weights)
    drafts = []
    for _ in range(2000):
        day = days[dice.index(day_totals)]
        eligible = bisect.bisect_left(signups, day)  # signed up strictly before the order
        drafts.append((day, customers[dice.index(cumulative, eligible)]["customer_id"]))
    drafts.sort()
    return [
        {"order_id": i + 1, "customer_id": cid, "order_date": day}
        for i, (day, cid) in enumerate(drafts)
    ]


def make_sales(
    dice: Dice,
    orders: list[dict[str, Any]],
    customers: list[dict[str, Any]],
    products: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    """One to four lines per order, distinct products; gadgets gain share every quarter.
    Also decides each order's status: electronics orders are refunded far more often."""
    by_category: dict[str, list[dict[str, Any]]] = {}
    for p in products:
        by_category.setdefault(p["category"], []).append(p)
    categories = list(by_category)
    customer = {c["customer_id"]: c for c in customers}

    sales = []
    for order in orders:
        buyer = customer[order["customer_id"]]
        q = quarter_index(order["order_date"])
        weights = [{"gadgets": 0.4 + 0.35 * q}.get(cat, 1.0) for cat in categories]
        lines = dice.weighted([1, 2, 3, 4], [0.35, 0.35, 0.2, 0.1])
        chosen: list[dict[str, Any]] = []
        while len(chosen) < lines:
            product = dice.pick(by_category[dice.weighted(categories, weights)])
            if product not in chosen:
                chosen.append(product)
        lo, hi = SEGMENT_QUANTITY[buyer["segment"]]
        discount = SEGMENT_DISCOUNT_PCT[buyer["segment"]]
        for product in chosen:
            quantity = dice.between(lo, hi)
            gross = quantity * product["unit_price"]
            cents = (gross * (100 - discount) + 50) // 100  # half up, in whole cents
            sales.append(
                {
                    "order_id": order["order_id"],
                    "product_id": product["product_id"],
                    "region": buyer["region"],
                    "quarter": quarter_of(order["order_date"]),
                    "quantity": quantity,
                    "amount": cents,
                }
            )

        has_electronics = any(p["category"] == "electronics" for p in chosen)
        if order["order_date"] > PENDING_FROM and dice.chance(0.7):
            order["status"] = "pending"
        elif dice.chance(0.22 if has_electronics else 0.02):
            order["status"] = "refunded"
        else:
            order["status"] = "paid"
    return sales


def write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def generate(out: Path) -> dict[str, int]:
    """Write the five CSV files into ``out``; return their row counts by file name."""
    dice = Dice(SEED)
    products = make_products()
    customers = make_customers(dice)
    orders = make_orders(dice, customers)
    sales = make_sales(dice, orders, customers, products)

    out.mkdir(parents=True, exist_ok=True)
    tables = {
        "regions.csv": (["region_id", "name", "manager"], [list(r) for r in REGIONS]),
        "products.csv": (
            ["product_id", "name", "category", "unit_price"],
            [[p["product_id"], p["name"], p["category"], money(p["unit_price"])] for p in products],
        ),
        "customers.csv": (
            ["customer_id", "name", "region_id", "segment", "signup_date"],
            [
                [
                    c["customer_id"],
                    c["name"],
                    c["region_id"],
                    c["segment"],
                    c["signup_date"].isoformat(),
                ]
                for c in customers
            ],
        ),
        "orders.csv": (
            ["order_id", "customer_id", "order_date", "status"],
            [
                [o["order_id"], o["customer_id"], o["order_date"].isoformat(), o["status"]]
                for o in orders
            ],
        ),
        "sales.csv": (
            ["order_id", "product_id", "region", "quarter", "quantity", "amount"],
            [
                [
                    s["order_id"],
                    s["product_id"],
                    s["region"],
                    s["quarter"],
                    s["quantity"],
                    money(s["amount"]),
                ]
                for s in sales
            ],
        ),
    }
    for name, (header, rows) in tables.items():
        write_csv(out / name, header, rows)
    return {name: len(rows) for name, (_, rows) in tables.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help=f"directory to write the CSV files into (default: {DEFAULT_OUT})",
    )
    args = parser.parse_args(argv)
    counts = generate(args.out)
    for name, count in counts.items():
        print(f"{args.out / name}: {count} rows")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
