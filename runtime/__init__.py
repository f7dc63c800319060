"""dagentic's runtime: plans, validation, expressions, the executor, tools and plugins.

Everything public is importable from here; the submodules are implementation.
"""

from .agent import Agent, AgentResult, Budgets
from .backend import ExecutionBackend, InProcessBackend
from .errors import (
    BudgetExceededError,
    CheckFailedError,
    DagenticError,
    EvaluationError,
    ExpressionError,
    FailureMode,
    InvalidArgsError,
    MissingCapabilityError,
    ModelError,
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
from .models import Message, Model, ModelReply, ScriptedModel, make_model
from .plan import Check, InputSpec, Plan, Retry, Step
from .planner import LLMPlanner, PlanningResult
from .plugins import (
    ENTRY_POINT_GROUP,
    close_sandboxes,
    load_sandbox_backends,
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
from .tracing import Tracing, tracing_from_settings

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
    "hookimpl",
    "hookspec",
    "load_plan",
    "load_sandbox_backends",
    "load_tools",
    "make_model",
    "make_plugin_manager",
    "open_sandbox",
    "resolve_inputs",
    "run_plan",
    "to_dot",
    "to_mermaid",
    "tool",
    "tracing_from_settings",
    "verify_answer",
]
