"""The public API: ``dagentic.__all__`` is pinned, and every public module declares its own."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
import textwrap

import dagentic
import pytest

PUBLIC_API = [
    "Agent",
    "AgentResult",
    "Approver",
    "BudgetExceededError",
    "Budgets",
    "Check",
    "CheckFailedError",
    "ClusterError",
    "CompiledPlan",
    "DagenticError",
    "ENTRY_POINT_GROUP",
    "Effects",
    "ErrorInfo",
    "EvaluationError",
    "ExecutionBackend",
    "Executor",
    "ExpressionError",
    "FUNCTIONS",
    "FailureMode",
    "InProcessBackend",
    "InputSpec",
    "InvalidArgsError",
    "Journal",
    "JournalError",
    "Journals",
    "Judge",
    "LLMPlanner",
    "Limits",
    "LogJournal",
    "MemoryJournal",
    "Message",
    "MissingCapabilityError",
    "Model",
    "ModelCall",
    "ModelError",
    "ModelJudge",
    "ModelReply",
    "Plan",
    "PlanError",
    "PlanningError",
    "PlanningResult",
    "PluginError",
    "PolicyBlockedError",
    "Problem",
    "ProducedFile",
    "Provenance",
    "ResourceLimitError",
    "Retry",
    "RunResult",
    "RunStatus",
    "Sandbox",
    "SandboxBackend",
    "SandboxResult",
    "SandboxSettings",
    "SandboxUnavailableError",
    "ScriptedModel",
    "Settings",
    "SettingsError",
    "Step",
    "StepEvent",
    "StepResult",
    "StepStatus",
    "StepTimeoutError",
    "Tool",
    "ToolContext",
    "ToolDefinitionError",
    "ToolError",
    "ToolNotFoundError",
    "ToolRegistry",
    "Tracing",
    "Usage",
    "Verdict",
    "Verification",
    "close_sandboxes",
    "compile_expression",
    "compile_plan",
    "compile_template",
    "current_step_span",
    "hookimpl",
    "hookspec",
    "load_plan",
    "load_sandbox_backends",
    "load_settings",
    "load_tools",
    "make_model",
    "make_plugin_manager",
    "open_sandbox",
    "resolve_inputs",
    "run_in_thread",
    "run_plan",
    "to_dot",
    "to_mermaid",
    "tool",
    "tracing_from_settings",
    "verify_answer",
]


def _public_modules() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(dagentic.__path__, prefix="dagentic."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return sorted(names)


PUBLIC_MODULES = _public_modules()


def test_public_api_is_exactly_the_pinned_list() -> None:
    # Adding or removing a public name is a decision: update PUBLIC_API with it.
    assert sorted(dagentic.__all__) == PUBLIC_API
    assert len(set(dagentic.__all__)) == len(dagentic.__all__), "duplicates in __all__"


@pytest.mark.parametrize("name", PUBLIC_API)
def test_public_name_is_importable_from_dagentic(name: str) -> None:
    namespace: dict[str, object] = {}
    exec(f"from dagentic import {name}", namespace)  # the import a user writes
    assert namespace[name] is getattr(dagentic, name)


def test_star_import_gives_exactly_the_public_api() -> None:
    namespace: dict[str, object] = {}
    exec("from dagentic import *", namespace)
    assert sorted(k for k in namespace if k != "__builtins__") == PUBLIC_API


def test_dagentic_has_public_modules() -> None:
    assert "dagentic.plan" in PUBLIC_MODULES
    assert "dagentic.graph" in PUBLIC_MODULES


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_public_module_declares_all_and_defines_every_name_in_it(module_name: str) -> None:
    module = importlib.import_module(module_name)
    exported = getattr(module, "__all__", None)
    assert exported is not None, f"{module_name} has no __all__"
    assert len(set(exported)) == len(exported), f"duplicates in {module_name}.__all__"
    missing = [name for name in exported if not hasattr(module, name)]
    assert not missing, f"{module_name}.__all__ names what it does not define: {missing}"


def test_importing_runtime_has_no_side_effects() -> None:
    # The engine never imports plugins or sandbox backends, and configures nothing on import.
    code = textwrap.dedent("""\
        import sys
        import structlog
        import dagentic
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("plugins", "sandbox"))
        print(loaded, structlog.is_configured())
        """)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "[] False\n"
