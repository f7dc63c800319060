"""dagentic's runtime: plans, validation, expressions, the executor, tools and plugins.

Everything public is importable from here; the submodules are implementation.
"""

from .backend import ExecutionBackend, InProcessBackend
from .errors import (
    BudgetExceededError,
    CheckFailedError,
    DagenticError,
    EvaluationError,
    ExpressionError,
    FailureMode,
    InvalidArgsError,
    PlanError,
    PluginError,
    PolicyBlockedError,
    Problem,
    ResourceLimitError,
    StepTimeoutError,
    ToolDefinitionError,
    ToolError,
    ToolNotFoundError,
)
from .executor import Approver, Executor, Judge, Verdict, resolve_inputs, run_plan
from .expressions import FUNCTIONS, compile_expression, compile_template
from .graph import CompiledPlan, compile_plan, load_plan, to_dot, to_mermaid
from .hookspecs import hookimpl, hookspec
from .journal import Journal, LogJournal, MemoryJournal, StepEvent
from .plan import Check, InputSpec, Plan, Retry, Step
from .plugins import (
    ENTRY_POINT_GROUP,
    close_sandboxes,
    load_sandbox_backends,
    load_tools,
    make_plugin_manager,
    open_sandbox,
)
from .result import ErrorInfo, Provenance, RunResult, RunStatus, StepResult, StepStatus, Usage
from .sandbox import (
    Limits,
    ProducedFile,
    Sandbox,
    SandboxBackend,
    SandboxResult,
    SandboxUnavailableError,
)
from .settings import SandboxSettings, Settings
from .tools import Tool, ToolContext, ToolRegistry, tool

__all__ = [
    "ENTRY_POINT_GROUP",
    "FUNCTIONS",
    "Approver",
    "BudgetExceededError",
    "Check",
    "CheckFailedError",
    "CompiledPlan",
    "DagenticError",
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
    "Judge",
    "Limits",
    "LogJournal",
    "MemoryJournal",
    "Plan",
    "PlanError",
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
    "Settings",
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
    "Usage",
    "Verdict",
    "close_sandboxes",
    "compile_expression",
    "compile_plan",
    "compile_template",
    "hookimpl",
    "hookspec",
    "load_plan",
    "load_sandbox_backends",
    "load_tools",
    "make_plugin_manager",
    "open_sandbox",
    "resolve_inputs",
    "run_plan",
    "to_dot",
    "to_mermaid",
    "tool",
]
