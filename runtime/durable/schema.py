"""The journal's tables, versioned: each migration takes a database from the version before
it to its own, and a store opens a database of any earlier version by applying the ones it
lacks (in one transaction each). Add a migration at the end; never change one that shipped.

The SQL is the same for SQLite and PostgreSQL but for the binary type (``{blob}``) and
SQLite's clustered tables (``{without_rowid}``: events are stored in key order, which
makes appending them about twice as cheap).
"""

from __future__ import annotations

__all__ = ["MIGRATIONS", "VERSION"]

# Version 1: runs and their events. Version 2: approvals (with decisions), agent records,
# and the indexes `dagentic runs` lists by. Version 3: feedback on runs (`dagentic feedback`),
# by the library plan it is about.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE dagentic_schema (version INTEGER NOT NULL)""",
        """CREATE TABLE runs (
            run_id TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            parent_id TEXT,
            plan_name TEXT NOT NULL,
            plan_json TEXT NOT NULL,
            plan_hash TEXT NOT NULL,
            plan_file TEXT,
            goal TEXT,
            inputs_json TEXT NOT NULL,
            status TEXT NOT NULL,
            error_json TEXT,
            outputs_json TEXT,
            created_at DOUBLE PRECISION NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL,
            finished_at DOUBLE PRECISION,
            owner TEXT,
            lease_until DOUBLE PRECISION
        )""",
        """CREATE TABLE events (
            run_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            kind TEXT NOT NULL,
            step_id TEXT,
            item INTEGER,
            attempt INTEGER NOT NULL,
            status TEXT,
            at DOUBLE PRECISION NOT NULL,
            data TEXT,
            output {blob},
            PRIMARY KEY (run_id, seq)
        ){without_rowid}""",
    ),
    (
        """CREATE TABLE approvals (
            run_id TEXT NOT NULL,
            step_id TEXT NOT NULL,
            item INTEGER NOT NULL,
            reason_asked TEXT NOT NULL,
            tool TEXT NOT NULL,
            args_json TEXT NOT NULL,
            side_effects TEXT,
            requested_at DOUBLE PRECISION NOT NULL,
            decision TEXT,
            decided_by TEXT,
            decided_at DOUBLE PRECISION,
            reason TEXT,
            PRIMARY KEY (run_id, step_id, item)
        )""",
        """CREATE TABLE records (
            run_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            kind TEXT NOT NULL,
            data TEXT NOT NULL,
            PRIMARY KEY (run_id, seq)
        )""",
        """CREATE INDEX runs_by_status ON runs (status, created_at)""",
        """CREATE INDEX runs_by_parent ON runs (parent_id)""",
        """CREATE INDEX approvals_waiting ON approvals (decision, requested_at)""",
    ),
    (
        """CREATE TABLE feedback (
            run_id TEXT NOT NULL,
            at DOUBLE PRECISION NOT NULL,
            verdict TEXT NOT NULL,
            note TEXT,
            plan_name TEXT,
            PRIMARY KEY (run_id, at)
        )""",
        """CREATE INDEX feedback_by_plan ON feedback (plan_name)""",
    ),
)
VERSION = len(MIGRATIONS)
