"""``dagentic plugin new NAME``: the tool package it writes is complete (pip-installable,
found through its entry point, its own tests pass), and a bad name or an existing folder is
refused with a message saying what to do."""

from __future__ import annotations

import importlib.util
import json
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest
from dagentic import load_tools

from tests.cli import invoke, isolate
from tests.test_install import Install

FILES = {
    ".gitignore",
    "README.md",
    "pyproject.toml",
    "src/dagentic_demo/__init__.py",
    "tests/test_demo.py",
}


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    isolate(tmp_path, monkeypatch)


def files_in(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def test_plugin_new_writes_a_tool_package_and_says_what_next(tmp_path: Path) -> None:
    result = invoke("plugin", "new", "demo", "--dir", tmp_path)
    assert result.exit_code == 0, result.stderr
    package = tmp_path / "dagentic-demo"
    assert result.stdout.splitlines() == [
        f"wrote {package}:",
        "  pyproject.toml",
        "  README.md",
        "  .gitignore",
        "  src/dagentic_demo/__init__.py",
        "  tests/test_demo.py",
        "next:",
        "  pip install -e ./dagentic-demo",  # relative to here: the test works in tmp_path
        "  pytest dagentic-demo",
        "  dagentic tools",
    ]
    assert files_in(package) == FILES

    project = tomllib.loads((package / "pyproject.toml").read_text(encoding="utf-8"))
    assert project["project"]["name"] == "dagentic-demo"
    assert project["project"]["requires-python"] == ">=3.11"
    assert project["project"]["dependencies"] == ["dagentic"]
    assert project["project"]["optional-dependencies"] == {"test": ["pytest>=8"]}
    assert project["project"]["entry-points"] == {"dagentic.plugins": {"demo": "dagentic_demo"}}
    assert project["build-system"]["build-backend"] == "setuptools.build_meta"

    # The tool, loaded from the written file: named, described, its effects declared.
    spec = importlib.util.spec_from_file_location(
        "dagentic_demo", package / "src" / "dagentic_demo" / "__init__.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    (hello,) = load_tools([module], use_entry_points=False)
    assert hello.name == "demo.hello"
    assert hello.description == "Greet someone by name."
    assert hello.side_effects == "none"
    assert hello.returns is not None and "greeting" in hello.returns
    assert hello.args_schema()["required"] == ["name"]

    readme = (package / "README.md").read_text(encoding="utf-8")
    for shown in ("pip install -e", "pytest dagentic-demo", "tool: demo.hello", "dagentic run"):
        assert shown in readme


@pytest.mark.parametrize("name", ["Demo", "1demo", "de-mo", "_demo", "demo.x", "class", ""])
def test_a_name_that_is_not_a_lowercase_identifier_is_refused(name: str, tmp_path: Path) -> None:
    result = invoke("plugin", "new", name, "--dir", tmp_path / "out")
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: {name!r} is not a valid plugin name: use a lowercase Python identifier (a "
        "letter, then letters, digits or underscores), such as weather\n"
    )
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", ["dagentic", "notify", "sql", "web", "sandbox", "tracing"])
def test_a_name_dagentic_uses_is_refused(name: str, tmp_path: Path) -> None:
    result = invoke("plugin", "new", name, "--dir", tmp_path / "out")
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: {name!r} is a name dagentic itself uses (a built-in plugin or a settings "
        "section); choose another name\n"
    )
    assert not (tmp_path / "out").exists()


def test_an_existing_folder_is_kept_unless_forced(tmp_path: Path) -> None:
    package = tmp_path / "dagentic-demo"
    package.mkdir()
    (package / "pyproject.toml").write_text("# mine\n", encoding="utf-8")
    (package / "notes.txt").write_text("mine\n", encoding="utf-8")

    refused = invoke("plugin", "new", "demo")  # --dir defaults to here: tmp_path
    assert refused.exit_code == 2
    assert refused.stdout == ""
    assert refused.stderr == "error: dagentic-demo already exists; pass --force to write over it\n"
    assert (package / "pyproject.toml").read_text(encoding="utf-8") == "# mine\n"

    forced = invoke("plugin", "new", "demo", "--force")
    assert forced.exit_code == 0, forced.stderr
    assert "dagentic-demo" in (package / "pyproject.toml").read_text(encoding="utf-8")
    assert files_in(package) == {*FILES, "notes.txt"}  # the folder's other files are left


def test_a_file_where_the_folder_would_go_is_refused_even_when_forced(tmp_path: Path) -> None:
    (tmp_path / "dagentic-demo").write_text("", encoding="utf-8")
    result = invoke("plugin", "new", "demo", "--force")
    assert result.exit_code == 2
    assert result.stderr == "error: dagentic-demo exists and is not a folder\n"


def test_a_folder_that_cannot_be_written_is_an_error_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("", encoding="utf-8")
    result = invoke("plugin", "new", "demo", "--dir", "afile/x")
    assert result.exit_code == 2
    assert result.stderr == (
        "error: cannot write afile/x/dagentic-demo/pyproject.toml: Not a directory\n"
    )


# --------------------------------------------------------------------------- end to end


def venv_seeing_this_one(where: Path, package: Path) -> Install:
    """A fresh venv in ``where`` whose Python also sees this environment's packages
    (dagentic, pytest, setuptools, pip): their site-packages are added with their .pth
    files, so dagentic's own editable install works there too. What is installed into it
    stays in it. Its commands run in ``where/work``."""
    (where / "work").mkdir()
    venv = Install(bin=where / "venv" / "bin", cwd=where / "work", source=package)
    made = venv.run(sys.executable, "-m", "venv", "--without-pip", where / "venv")
    assert made.returncode == 0, made.stderr
    found = venv.python("import sysconfig; print(sysconfig.get_paths()['purelib'])")
    assert found.returncode == 0, found.stderr
    ours = sysconfig.get_paths()["purelib"]
    pth = Path(found.stdout.strip()) / "_dagentic_outer_env.pth"
    pth.write_text(f"import site; site.addsitedir({ours!r})\n", encoding="utf-8")
    return venv


@pytest.mark.slow
def test_the_written_package_installs_and_passes_its_own_tests(tmp_path: Path) -> None:
    assert invoke("plugin", "new", "demo", "--dir", tmp_path).exit_code == 0
    package = tmp_path / "dagentic-demo"
    venv = venv_seeing_this_one(tmp_path, package)
    quiet_pip = {"PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}

    # --no-index: its dependency, dagentic, must be found installed, nothing downloaded.
    installed = venv.run(
        venv.bin / "python",
        *("-m", "pip", "install", "--no-index", "--no-build-isolation", "--quiet"),
        *("-e", package),
        env=quiet_pip,
    )
    assert installed.returncode == 0, installed.stderr

    tested = venv.run(venv.bin / "python", "-m", "pytest", "-q", "-p", "no:cacheprovider", package)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "3 passed" in tested.stdout

    # `dagentic tools` there (the venv has no dagentic script of its own: the same main()).
    listed = venv.run(
        venv.bin / "python", "-c", "from dagentic.cli import main; main()", "tools", "--json"
    )
    assert listed.returncode == 0, listed.stderr
    specs = {spec["name"]: spec for spec in json.loads(listed.stdout)}
    assert specs["demo.hello"]["plugin"] == "demo"
    assert specs["demo.hello"]["description"] == "Greet someone by name."

    # Nothing of it reached this environment.
    ours = invoke("tools", "--json")
    assert "demo.hello" not in {spec["name"] for spec in json.loads(ours.stdout)}
