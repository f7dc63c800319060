"""The answer type check: which/how many/how much questions against the columns of a
plan's outputs (dagentic.answer_type)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from dagentic.answer_type import Asked, answer_misfit, asked_for, output_columns

REGIONS = {
    "year": 2026,
    "most_customers": "North",
    "customers_by_region": [
        {"region": "North", "manager": "Ada", "customers": 31, "signed_up_that_year": 4},
        {"region": "West", "manager": "Bo", "customers": 20, "signed_up_that_year": 2},
    ],
}
CUSTOMERS = {
    "region": "all",
    "top_customer": "Ironwood Labs",
    "top_customers": [
        {"customer": "Ironwood Labs", "segment": "business", "orders": 9, "revenue": 1200.5},
    ],
}
REFUNDS = {
    "most_refunded_category": "garden",
    "refund_rates": [{"category": "garden", "orders": 40, "refunded": 5, "refund_rate": 0.125}],
}


def test_what_a_question_asks_for() -> None:
    assert asked_for("Which customer signed up first?") == Asked("which", ("customer", "sign"))
    assert asked_for("HOW  MANY products are in the catalogue?") == Asked(
        "how many", ("product", "catalogue")
    )
    assert asked_for("how much revenue came from the West?") == Asked(
        "how much", ("revenue", "came")
    )
    assert asked_for("Rank the regions by sales.") is None
    assert asked_for("Which of the regions sold most?") == Asked("which", ("region", "sold"))
    # a verb after the phrase: it names nothing, and there is no verdict
    assert asked_for("How much did the West sell in 2026Q2?") == Asked("how much", ())
    assert asked_for("Which is the best quarter?") == Asked("which", ())
    assert answer_misfit("How much did the West sell in 2026Q2?", REFUNDS) is None


@pytest.mark.parametrize(
    ("goal", "outputs"),
    [
        ("Which region has the most customers?", REGIONS),
        ("How many customers does each region have?", REGIONS),
        ("How many customers signed up in each region in 2025?", REGIONS),
        ("Which customer spent the most in the Central region?", CUSTOMERS),
        ("Which product categories get refunded most often?", REFUNDS),
        ("How many refunded orders were there?", REFUNDS),
        ("Which category has the highest refund rate?", REFUNDS),
        # no verdict: other questions, or outputs with nothing named
        ("What is the most expensive product?", REFUNDS),
        ("Who are our biggest customers?", REFUNDS),
        ("List the top 3 products.", REFUNDS),
        ("Which customer signed up first?", {}),
        ("Which customer signed up first?", {"rows": []}),
    ],
)
def test_outputs_that_hold_what_is_asked_pass(goal: str, outputs: dict[str, Any]) -> None:
    assert answer_misfit(goal, outputs) is None


def test_a_plan_that_answers_another_question_is_told_apart() -> None:
    # a single value that is a cell of a table is of that column's kind: North is a region
    assert answer_misfit("Which customer signed up first?", REGIONS) == (
        "it gives region, manager, customers, signed_up_that_year, year: no column of names "
        "is named for what the goal asks which of (customer, sign)"
    )
    assert answer_misfit("How many products are in the catalogue?", REFUNDS) == (
        "it gives category, orders, refunded, refund_rate: no column of numbers is named for "
        "what the goal asks how many of (product, catalogue)"
    )
    # a column of names is not a count of them
    assert answer_misfit("How many enterprise customers are in the West region?", CUSTOMERS)
    # nor a count a name
    assert answer_misfit("Which orders were refunded?", {"rows": [{"orders": 3}]})
    assert answer_misfit("How much revenue came from gadgets?", {"revenue": "high"})


def test_a_plan_whose_goal_asks_the_very_same_passes_whatever_its_outputs_are_named() -> None:
    saved = {"leader": "West"}  # a plan the planner wrote, saved from a verified run
    asks = "Which region led revenue in 2026Q2?"
    assert answer_misfit("Which region led revenue in 2025Q1?", saved, asks) is None
    assert answer_misfit("Which region led revenue in 2025Q1?", saved) is not None
    # another phrase, or other words: the outputs decide
    plan_goal = "How many customers each region has, and how many signed up in a given year"
    assert answer_misfit("Which customer signed up first?", REGIONS, plan_goal) is not None
    refunds = "Which product categories get refunded most often"
    assert answer_misfit("Which product is refunded most often?", REFUNDS, refunds) is not None
    assert answer_misfit("Which region brought in most revenue?", saved, asks) is not None


def test_columns_are_read_from_step_outputs_nested_tables_and_single_values() -> None:
    nested = {"result": {"rows": [{"name": "A", "total": Decimal("2.5"), "note": None}]}}
    assert output_columns(nested) == {"name": False, "total": True, "note": None}
    assert output_columns({"count": 3, "flag": True, "label": "x"}) == {
        "count": True,
        "label": False,
    }
    # a column of mixed values holds names; one of nulls fits either question
    mixed = {"rows": [{"quarter": "2025Q1"}, {"quarter": 3}, {"quarter": None}]}
    assert output_columns(mixed) == {"quarter": False}
    assert answer_misfit("How many notes?", nested) is None
    assert answer_misfit("Which note is last?", nested) is None


def test_deep_or_huge_outputs_are_read_within_bounds() -> None:
    deep: dict[str, Any] = {"rows": [{"customer": "A"}]}
    for _ in range(10):
        deep = {"x": deep}
    assert output_columns(deep) == {}
    wide = {"rows": [{"n": i} for i in range(10_000)] + [{"customer": "late"}]}
    assert "customer" not in output_columns(wide)


def test_column_names_from_hostile_outputs_are_cut_in_the_message() -> None:
    hostile = {"rows": [{f"\x1b[31m{'x' * 10_000}_{n}": 1 for n in range(30)}]}
    why = answer_misfit("Which customer paid?", hostile)
    assert why is not None and len(why) < 12 * 45 + 200
    assert why.startswith("it gives \x1b[31m" + "x" * 32 + "...") and ", ..." in why
