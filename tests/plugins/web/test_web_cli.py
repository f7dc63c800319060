"""``dagentic index build|search``: through typer's CliRunner (with the plugin command groups
added, as ``main()`` does) and as the installed script."""

from __future__ import annotations

import json
import re
import subprocess
import textwrap
from pathlib import Path

import pytest
from dagentic.plugins.web.index import LocalIndex
from typer.testing import Result

from tests import cli

SECONDS = r"\d+(\.\d{1,3})?"
REPORT_KEYS = {
    "index_dir",
    "documents",
    "added",
    "updated",
    "removed",
    "unchanged",
    "skipped",
    "seconds",
}


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No dagentic.toml or DAGENTIC_* variables from around the tests reach the CLI."""
    cli.isolate(tmp_path, monkeypatch)


def invoke(*args: str | Path, env: dict[str, str | None] | None = None) -> Result:
    return cli.invoke(*args, env=env, plugins=True)


def write(folder: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return folder


DOCS = {
    "news/otters.md": """\
        ---
        title: Otters return to the river
        date: 2026-05-02
        url: https://news.example.com/otters
        ---
        Otters were seen near the mill again; the otter survey counts six.
        """,
    "news/mill.md": """\
        ---
        title: Mill restoration
        date: 2025-02-01
        url: https://heritage.example.org/mill
        ---
        The mill wheel turns again. An otter visited once.
        """,
    "notes/weir.txt": """\
        Title: Weir inspection
        Date: 2026-05-20

        The weir was inspected; no otters.
        """,
    "page.html": """\
        <html><head><title>River festival</title>
        <link rel="canonical" href="https://www.festival.example.com/"></head>
        <body><article><p>Boats, music and food along the river all weekend.</p></article>
        </body></html>
        """,
}


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    return write(tmp_path / "docs", DOCS)


def index_env(tmp_path: Path) -> dict[str, str | None]:
    return {"DAGENTIC_WEB__LOCAL__INDEX_DIR": str(tmp_path / "idx")}


# --------------------------------------------------------------------------- build


def test_build_prints_one_line_report(tmp_path: Path, docs: Path) -> None:
    result = invoke("index", "build", docs, "--index", tmp_path / "idx")
    assert result.exit_code == 0, result.output
    index_dir = re.escape(str((tmp_path / "idx").resolve()))
    assert re.fullmatch(
        rf"indexed 4 documents into {index_dir} in {SECONDS} s \(4 added, 0 updated, "
        rf"0 removed, 0 unchanged\)\n",
        result.stdout,
    ), result.stdout
    assert result.stderr == ""
    assert LocalIndex(tmp_path / "idx").exists()


def test_second_build_reports_everything_unchanged(tmp_path: Path, docs: Path) -> None:
    assert invoke("index", "build", docs, "--index", tmp_path / "idx").exit_code == 0
    result = invoke("index", "build", docs, "--index", tmp_path / "idx")
    assert result.exit_code == 0, result.output
    assert re.fullmatch(
        rf"indexed 4 documents into \S+ in {SECONDS} s \(0 added, 0 updated, "
        rf"0 removed, 4 unchanged\)\n",
        result.stdout,
    ), result.stdout
    (docs / "notes" / "weir.txt").unlink()
    write(docs, {"new.md": "# New bridge\nA bridge.\n"})
    (docs / "news" / "mill.md").write_text("# Mill\nClosed for winter.\n", encoding="utf-8")
    result = invoke("index", "build", docs, "--index", tmp_path / "idx")
    assert re.search(r"\(1 added, 1 updated, 1 removed, 2 unchanged\)\n\Z", result.stdout)


def test_build_json_prints_the_report(tmp_path: Path, docs: Path) -> None:
    result = invoke("index", "build", docs, "--index", tmp_path / "idx", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert set(report) == REPORT_KEYS
    assert report == {
        **report,
        "index_dir": str((tmp_path / "idx").resolve()),
        "documents": 4,
        "added": 4,
        "updated": 0,
        "removed": 0,
        "unchanged": 0,
        "skipped": [],
    }
    assert isinstance(report["seconds"], float) and report["seconds"] >= 0
    again = json.loads(invoke("index", "build", docs, "--index", tmp_path / "idx", "--json").stdout)
    assert (again["added"], again["unchanged"]) == (0, 4)


def test_build_reports_skipped_files_on_stderr(tmp_path: Path, docs: Path) -> None:
    big = docs / "big.txt"
    big.write_bytes(b"Title: Big\n\n" + b"x" * 5_000_001)
    result = invoke("index", "build", docs, "--index", tmp_path / "idx")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("indexed 4 documents into ")
    assert result.stderr == f"skipped {big.resolve()}: larger than 5000000 bytes\n"


def test_build_of_a_nonexistent_path_exits_2_with_the_error_on_stderr(tmp_path: Path) -> None:
    result = invoke("index", "build", "missing", "--index", tmp_path / "idx")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == (
        f"error: index: {(tmp_path / 'missing').resolve()} does not "
        f"exist; pass a folder of .md, .html or .txt documents\n"
    )
    assert not LocalIndex(tmp_path / "idx").exists()


def test_build_uses_base_url_for_documents_without_a_url(tmp_path: Path, docs: Path) -> None:
    result = invoke(
        "index",
        "build",
        docs,
        "--index",
        tmp_path / "idx",
        "--base-url",
        "https://kb.example.net/docs",
    )
    assert result.exit_code == 0, result.output
    found = LocalIndex(tmp_path / "idx").search("weir inspection", limit=1)
    assert [r["url"] for r in found] == ["https://kb.example.net/docs/notes/weir.txt"]


def test_build_without_arguments_follows_the_settings(tmp_path: Path, docs: Path) -> None:
    (tmp_path / "dagentic.toml").write_text(
        textwrap.dedent(f"""\
        [web.local]
        index_dir = "from-toml"
        paths = [{json.dumps(str(docs / "news"))}]
        base_url = "https://toml.example"
        """),
        encoding="utf-8",
    )
    result = invoke("index", "build")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(
        f"indexed 2 documents into {(tmp_path / 'from-toml').resolve()} in "
    )


def test_build_without_paths_or_settings_indexes_the_bundled_collection(tmp_path: Path) -> None:
    result = invoke("index", "build", "--index", tmp_path / "idx")
    assert result.exit_code == 0, result.output
    match = re.fullmatch(
        rf"indexed (\d+) documents into \S+ in {SECONDS} s \((\d+) added, 0 "
        rf"updated, 0 removed, 0 unchanged\)\n",
        result.stdout,
    )
    assert match is not None, result.stdout
    assert int(match.group(1)) == int(match.group(3)) >= 10
    assert result.stderr == ""


# --------------------------------------------------------------------------- search


@pytest.fixture
def built(tmp_path: Path, docs: Path) -> dict[str, str | None]:
    assert LocalIndex(tmp_path / "idx").build([docs]).documents == 4
    return index_env(tmp_path)


def test_search_prints_ranked_results(built: dict[str, str | None]) -> None:
    result = invoke("index", "search", "otters", env=built)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 9  # three results, three lines each
    assert re.fullmatch(r"1\. Otters return to the river  \[\d+\.\d\d, 2026-05-02\]", lines[0])
    assert lines[1] == "   https://news.example.com/otters"
    assert lines[2].startswith("   ") and "otter" in lines[2].lower()
    assert re.fullmatch(r"2\. .+  \[\d+\.\d\d, \d{4}-\d\d-\d\d\]", lines[3])
    assert re.fullmatch(r"3\. .+  \[\d+\.\d\d, (\d{4}-\d\d-\d\d|undated)\]", lines[6])
    scores = [
        float(re.search(r"\[(\d+\.\d\d),", line).group(1))  # type: ignore[union-attr]
        for line in lines[::3]
    ]
    assert scores == sorted(scores, reverse=True)


def test_search_marks_undated_results(built: dict[str, str | None]) -> None:
    result = invoke("index", "search", "river festival boats", "--limit", "1", env=built)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[:2] == [
        result.stdout.splitlines()[0],
        "   https://www.festival.example.com/",
    ]
    assert result.stdout.splitlines()[0].endswith(", undated]")


def test_search_json_limit_and_site(built: dict[str, str | None]) -> None:
    result = invoke("index", "search", "otters", "--json", "--limit", "2", env=built)
    assert result.exit_code == 0, result.output
    results = json.loads(result.stdout)
    assert len(results) == 2
    assert all(set(r) == {"title", "url", "snippet", "score", "published"} for r in results)
    assert results[0]["url"] == "https://news.example.com/otters"
    assert results[0]["published"] == "2026-05-02"
    result = invoke("index", "search", "otter", "--json", "--site", "example.org", env=built)
    assert [r["url"] for r in json.loads(result.stdout)] == ["https://heritage.example.org/mill"]
    result = invoke(
        "index", "search", "festival", "--json", "--site", "festival.example.com", env=built
    )
    assert [r["url"] for r in json.loads(result.stdout)] == ["https://www.festival.example.com/"]


def test_search_recency_drops_undated_and_old_results(built: dict[str, str | None]) -> None:
    result = invoke(
        "index",
        "search",
        "otters mill weir festival",
        "--json",
        "--recency",
        "year",
        "--limit",
        "10",
        env=built,
    )
    assert result.exit_code == 0, result.output
    # The run date moves on, so only what holds for any date: no undated page ever.
    assert all(r["published"] is not None for r in json.loads(result.stdout))


def test_search_with_no_match_says_so(built: dict[str, str | None]) -> None:
    result = invoke("index", "search", "xylophone", env=built)
    assert (result.exit_code, result.stdout) == (0, "no results\n")
    result = invoke("index", "search", "xylophone", "--json", env=built)
    assert (result.exit_code, json.loads(result.stdout)) == (0, [])


@pytest.mark.parametrize("recency", ["hour", "Week", ""])
def test_search_with_a_bad_recency_exits_2(built: dict[str, str | None], recency: str) -> None:
    result = invoke("index", "search", "otters", "--recency", recency, env=built)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == (
        f"error: --recency must be day, week, month or year, not {recency!r}\n"
    )


def test_search_builds_the_bundled_collection_when_there_is_no_index(tmp_path: Path) -> None:
    result = invoke(
        "index",
        "search",
        "West stores expansion",
        "--json",
        "--limit",
        "3",
        env=index_env(tmp_path),
    )
    assert result.exit_code == 0, result.output
    results = json.loads(result.stdout)
    assert results and "west" in results[0]["title"].lower()
    assert LocalIndex(tmp_path / "idx").exists()


def test_search_of_odd_queries_never_fails(built: dict[str, str | None]) -> None:
    for query in ["AND", "title:otter", '"otter', "+-", "", "(((", "otter^2"]:
        result = invoke("index", "search", query, "--json", env=built)
        assert result.exit_code == 0, (query, result.output)
        assert isinstance(json.loads(result.stdout), list)


# --------------------------------------------------------------------------- help, script


def test_help_lists_the_index_group() -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    assert re.search(
        r"^\W*index\s+Build and query the local search index", result.stdout, re.MULTILINE
    ), result.stdout
    result = invoke("index", "--help")
    assert result.exit_code == 0
    assert re.search(r"\bbuild\b", result.stdout) and re.search(r"\bsearch\b", result.stdout)


def run_script(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return cli.run_script(*args, cwd=cwd, env={"COLUMNS": "400"})


@pytest.mark.slow
def test_installed_script_help_lists_the_index_group(tmp_path: Path) -> None:
    done = run_script("--help", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert re.search(r"^\W*index\s+Build and query", done.stdout, re.MULTILINE), done.stdout


@pytest.mark.slow
def test_installed_script_builds_and_searches(tmp_path: Path, docs: Path) -> None:
    done = run_script("index", "build", docs, "--index", "idx", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(
        rf"indexed 4 documents into {re.escape(str(tmp_path / 'idx'))} in "
        rf"{SECONDS} s \(4 added, 0 updated, 0 removed, 0 unchanged\)\n",
        done.stdout,
    ), done.stdout
    (tmp_path / "dagentic.toml").write_text('[web.local]\nindex_dir = "idx"\n', encoding="utf-8")
    done = run_script("index", "search", "otters", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)[0]["url"] == "https://news.example.com/otters"
    done = run_script("index", "build", tmp_path / "nope", "--index", "idx", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr == (
        f"error: index: {tmp_path / 'nope'} does not exist; pass a folder "
        f"of .md, .html or .txt documents\n"
    )
