"""dagentic's runtime: plans, validation, expressions, the executor, tools and plugins.

Everything public is importable from here; the submodules are implementation.

The names load on first use (PEP 562): ``import dagentic`` costs next to nothing, and
``from dagentic import Executor`` imports only what the executor needs. Type checkers read
the same names from the ``TYPE_CHECKING`` block below.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .agent import Agent, AgentResult, Budgets
    from .backend import ExecutionBackend, InProcessBackend
    from .errors import (
        BudgetExceededError,
        CheckFailedError,
        ClusterError,
        DagenticError,
        EvaluationError,
        ExpressionError,
        FailureMode,
        InvalidArgsError,
        JournalError,
        MissingCapabilityError,
        ModelError,
        PlanError,
        PlanningError,
        PluginError,
        PolicyBlockedError,
        Problem,
        ResourceLimitError,
        SettingsError,
        StepTimeoutError,
        ToolDefinitionError,
        ToolError,
        ToolNotFoundError,
    )
    from .executor import Approver, Executor, Judge, Verdict, resolve_inputs, run_plan
    from .expressions import FUNCTIONS, compile_expression, compile_template
    from .graph import CompiledPlan, compile_plan, load_plan, to_dot, to_mermaid
    from .hookspecs import hookimpl, hookspec
    from .isolation import (
        Limits,
        ProducedFile,
        Sandbox,
        SandboxBackend,
        SandboxResult,
        SandboxUnavailableError,
    )
    from .journal import Journal, Journals, LogJournal, MemoryJournal, StepEvent
    from .models import Message, Model, ModelReply, ScriptedModel, make_model
    from .plan import Check, InputSpec, Plan, Retry, Step
    from .planner import LLMPlanner, PlanningResult
    from .plugin_manager import (
        ENTRY_POINT_GROUP,
        close_sandboxes,
        load_sandbox_backends,
        load_settings,
        load_tools,
        make_plugin_manager,
        open_sandbox,
    )
    from .reflection import ModelJudge, Verification, verify_answer
    from .result import (
        ErrorInfo,
        ModelCall,
        Provenance,
        RunResult,
        RunStatus,
        StepResult,
        StepStatus,
        Usage,
    )
    from .settings import SandboxSettings, Settings
    from .threads import run_in_thread
    from .tools import Effects, Tool, ToolContext, ToolRegistry, tool
    from .tracing import Tracing, current_step_span, tracing_from_settings

# Where each public name lives: submodule -> names. Keep in step with the block above and
# __all__ (tests/test_startup.py checks that all three agree).
_EXPORTS: dict[str, tuple[str, ...]] = {
    "agent": ("Agent", "AgentResult", "Budgets"),
    "backend": ("ExecutionBackend", "InProcessBackend"),
    "errors": (
        "BudgetExceededError",
        "CheckFailedError",
        "ClusterError",
        "DagenticError",
        "EvaluationError",
        "ExpressionError",
        "FailureMode",
        "InvalidArgsError",
        "JournalError",
        "MissingCapabilityError",
        "ModelError",
        "PlanError",
        "PlanningError",
        "PluginError",
        "PolicyBlockedError",
        "Problem",
        "ResourceLimitError",
        "SettingsError",
        "StepTimeoutError",
        "ToolDefinitionError",
        "ToolError",
        "ToolNotFoundError",
    ),
    "executor": ("Approver", "Executor", "Judge", "Verdict", "resolve_inputs", "run_plan"),
    "expressions": ("FUNCTIONS", "compile_expression", "compile_template"),
    "graph": ("CompiledPlan", "compile_plan", "load_plan", "to_dot", "to_mermaid"),
    "hookspecs": ("hookimpl", "hookspec"),
    "isolation": (
        "Limits",
        "ProducedFile",
        "Sandbox",
        "SandboxBackend",
        "SandboxResult",
        "SandboxUnavailableError",
    ),
    "journal": ("Journal", "Journals", "LogJournal", "MemoryJournal", "StepEvent"),
    "models": ("Message", "Model", "ModelReply", "ScriptedModel", "make_model"),
    "plan": ("Check", "InputSpec", "Plan", "Retry", "Step"),
    "planner": ("LLMPlanner", "PlanningResult"),
    "plugin_manager": (
        "ENTRY_POINT_GROUP",
        "close_sandboxes",
        "load_sandbox_backends",
        "load_settings",
        "load_tools",
        "make_plugin_manager",
        "open_sandbox",
    ),
    "reflection": ("ModelJudge", "Verification", "verify_answer"),
    "result": (
        "ErrorInfo",
        "ModelCall",
        "Provenance",
        "RunResult",
        "RunStatus",
        "StepResult",
        "StepStatus",
        "Usage",
    ),
    "settings": ("SandboxSettings", "Settings"),
    "threads": ("run_in_thread",),
    "tools": ("Effects", "Tool", "ToolContext", "ToolRegistry", "tool"),
    "tracing": ("Tracing", "current_step_span", "tracing_from_settings"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later look-ups find it without coming here
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


__all__ = [
    "ENTRY_POINT_GROUP",
    "FUNCTIONS",
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
    "Effects",
    "ErrorInfo",
    "EvaluationError",
    "ExecutionBackend",
    "Executor",
    "ExpressionError",
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
