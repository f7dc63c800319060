"""A snippet for `dagentic sandbox run examples/sandbox_pandas_report.py`: pandas in the sandbox."""

import pandas as pd

sales = pd.DataFrame(
    {
        "region": ["north", "south", "north", "east", "south", "east"],
        "quarter": ["Q1", "Q1", "Q2", "Q2", "Q3", "Q3"],
        "amount": [120.0, 80.5, 150.25, 60.0, 95.75, 70.0],
    }
)
by_region = sales.groupby("region")["amount"].sum().sort_values(ascending=False)
print(by_region.to_string())
result = {"top_region": by_region.index[0], "total": float(by_region.sum())}
