"""Settings: the core's model, read from ``dagentic.toml`` (or ``[tool.dagentic]`` in
``pyproject.toml``) in the working directory and from ``DAGENTIC_*`` environment variables,
and the sections plugins own.

Precedence, highest first: arguments to ``Settings(...)``, environment variables,
``dagentic.toml``, ``pyproject.toml``, defaults. Nested values use ``__``, e.g.
``DAGENTIC_MODEL__BASE_URL``; lists and tables in one variable are JSON, e.g.
``DAGENTIC_TOOL_CONCURRENCY='{"web.search": 2}'``.

Plugins own their settings. A plugin's ``register_settings`` hook returns its pydantic model,
which names its section with a class variable (``section: ClassVar[str] = "sql"``); the
section is read like the core's: ``[sql]`` in dagentic.toml, ``[tool.dagentic.sql]`` in
pyproject.toml, ``DAGENTIC_SQL__MAX_ROWS``. ``Settings()`` does not know the plugins (it
must stay cheap to make, so it imports none): it keeps their sections as read, and a plugin
gets its own, validated once, with :meth:`Settings.plugin`. Unknown sections (a typo, a
plugin that is not installed) are found by :meth:`Settings.check_sections`, which
``dagentic.plugin_manager.load_settings`` calls with every installed plugin's model; the
command line does so before it runs anything.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    PyprojectTomlConfigSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)
from pydantic_settings import SettingsError as SourceError

from ._sources import Sources, core_only, is_table
from .bounds import MAX_RUN_OUTPUT_SIZE
from .errors import PluginError, SettingsError
from .isolation import Limits
from .redact import hold

__all__ = [
    "AgentSettings",
    "CacheSettings",
    "ExecutionSettings",
    "GuardrailSettings",
    "JournalSettings",
    "LibrarySettings",
    "MemorySettings",
    "ModelPrice",
    "ModelSettings",
    "OtlpSettings",
    "RaySettings",
    "SandboxSettings",
    "ServeSettings",
    "Settings",
    "TracingSettings",
    "section_of",
]

M = TypeVar("M", bound=BaseModel)
SECTION_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")


class SandboxSettings(BaseModel):
    """Where and how ``code.python`` (and ``dagentic sandbox run``) run code."""

    model_config = ConfigDict(extra="forbid")

    backend: Literal["auto", "docker", "process"] = Field(
        "auto", description="docker, process (bubblewrap) or auto: the strongest available."
    )
    image: str = Field("dagentic-sandbox:latest", description="Docker image to run code in.")
    pool_size: int = Field(2, ge=0, description="Warm containers kept ready.")
    cpus: float = Field(1.0, gt=0, description="CPU quota of a container.")
    limits: Limits = Field(default_factory=Limits)


class ModelPrice(BaseModel):
    """What a model costs, in US dollars per million tokens."""

    model_config = ConfigDict(extra="forbid")

    input: float = Field(0.0, ge=0)
    output: float = Field(0.0, ge=0)


class ModelSettings(BaseModel):
    """The model that plans, judges and answers."""

    model_config = ConfigDict(extra="forbid")

    provider: Literal["local", "openai"] = Field(
        "local",
        description="local (llama-cpp-python, in process) or openai (any "
        "OpenAI-compatible endpoint).",
    )
    name: str | None = Field(
        None,
        description="openai: the model name; local: a .gguf file (default: the "
        "bundled Gemma 3 270M).",
    )
    base_url: str | None = Field(
        None, description="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1."
    )
    api_key: SecretStr | None = Field(None, description="Else OPENAI_API_KEY.")
    structured_output: Literal["json_schema", "json_object", "none"] = Field(
        "json_schema",
        description="How the endpoint takes a JSON schema (json_object for "
        "llama-cpp-python's server; none: in the prompt).",
    )
    stream: bool = Field(False, description="Stream replies from the endpoint.")
    temperature: float = Field(0.0, ge=0)
    max_tokens: int = Field(1024, ge=1, description="Tokens one reply may have.")
    timeout: float = Field(120.0, gt=0, description="Seconds per model call.")
    max_retries: int = Field(3, ge=0, description="Retries of 429/5xx/connection errors.")
    context_size: int = Field(8192, ge=512, description="local: the context window.")
    threads: int | None = Field(None, ge=1, description="local: CPU threads (default: all).")
    prices: dict[str, ModelPrice] = Field(
        default_factory=dict, description="Price per model name, for usage cost."
    )
    planner: str | None = Field(
        None,
        description="The model that plans (and repairs and critiques plans), as --model: "
        "local, local:PATH.gguf or openai:NAME (default: this section's model).",
    )
    judge: str | None = Field(
        None, description="The model that judges checks and verifies answers (as planner)."
    )
    answer: str | None = Field(None, description="The model that writes answers (as planner).")
    memory: str | None = Field(
        None, description="The model that decides memory writes (as planner)."
    )
    router: str | None = Field(
        None,
        description="The model that chooses a library plan for a goal and fills its inputs "
        "(as planner; default: the planner's model).",
    )
    fallbacks: list[str] = Field(
        default_factory=list,
        description="Models tried in order when a call fails (an error, a timeout, a rate "
        "limit), after the provider's own retries (as planner).",
    )


class AgentSettings(BaseModel):
    """Budgets and behaviour of the agent loop (``dagentic ask``, ``Agent``)."""

    model_config = ConfigDict(extra="forbid")

    max_replans: int = Field(2, ge=0, description="Plans after the first, at most.")
    max_repairs: int = Field(2, ge=0, description="Repair attempts of an invalid plan.")
    max_steps: int = Field(50, ge=1, description="Steps run over all plan versions.")
    max_tokens: int = Field(60_000, ge=1, description="Model tokens, input and output.")
    max_cost: float | None = Field(None, ge=0, description="US dollars of model calls.")
    max_wall_time: float = Field(600.0, gt=0, description="Seconds for the whole run.")
    critique: bool = Field(False, description="Have the model critique each plan before it runs.")
    approve: Literal["writes", "all", "none"] = Field(
        "writes",
        description="Which calls of a model's plan need approval: writes (calls that write "
        "or send data off the machine), all, or none. On a terminal `dagentic ask` asks; "
        "--yes approves all; with neither they are refused (policy_blocked).",
    )
    tool_selection_above: int | None = Field(
        40,
        ge=0,
        description="With more tools installed than this, the planner is shown only the "
        "tool_selection_limit most relevant to the goal (and the planning-context tools); "
        "none: always every tool.",
    )
    tool_selection_limit: int = Field(
        30, ge=1, description="Tools the planner is shown when tools are selected."
    )
    routing: bool = Field(
        True,
        description="Route a goal to a plan of the library first (a model chooses one of the "
        "closest or none, and fills its inputs); plan freely only when none fits.",
    )
    library_answer: Literal["outputs", "model"] = Field(
        "outputs",
        description="The answer of a library plan the goal was routed to: its outputs as "
        "text (what its author declared it answers; no model call), or written by the model "
        "from its step results as for a model's plan. Verified either way.",
    )
    routing_candidates: int = Field(
        4, ge=1, le=12, description="Library plans closest to the goal the router is offered."
    )
    routing_min_match: float = Field(
        0.6,
        ge=0,
        le=1,
        description="Share of the goal's words a library plan must match to be offered "
        "(0: any plan that matches a word).",
    )


class MemorySettings(BaseModel):
    """Long-term memory (a DuckDB file) and how the agent uses it."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="dagentic ask recalls and remembers.")
    path: Path = Field(Path(".dagentic/memory.duckdb"), description="The memory file.")
    agent: str = Field("default", description="The agent scope of what is remembered.")
    recall_limit: int = Field(5, ge=1, description="Items recalled into a planner's prompt.")
    half_life_days: float = Field(30.0, gt=0, description="Recency halves every N days.")
    policy: Literal["model", "threshold"] = Field(
        "threshold",
        description="Who decides insert/merge/replace/ignore: the model, or similarity thresholds.",
    )
    duplicate_similarity: float = Field(0.95, gt=0, le=1, description="At least: ignore.")
    related_similarity: float = Field(0.80, gt=0, le=1, description="At least: merge.")
    context_tokens: int | None = Field(
        None,
        ge=256,
        description="Token budget of a planner's prompt (default: the model's "
        "context size minus its reply).",
    )


class OtlpSettings(BaseModel):
    """Where the ``otlp`` tracing exporter sends spans and metrics."""

    model_config = ConfigDict(extra="forbid")

    endpoint: str | None = Field(
        None,
        description="The collector: a base URL for http/protobuf (/v1/traces and "
        "/v1/metrics are added); for grpc http://host:port (plaintext) or "
        "https://host:port / host:port (TLS); unset: "
        "OTEL_EXPORTER_OTLP_ENDPOINT, else the exporter's localhost default.",
    )
    protocol: Literal["http/protobuf", "grpc"] = "http/protobuf"
    headers: dict[str, SecretStr] = Field(
        default_factory=dict, description="Sent with every export (e.g. an API key)."
    )
    timeout: float = Field(
        5.0,
        gt=0,
        description="Seconds per export (a collector that "
        "does not answer delays a CLI command by a "
        "few times this).",
    )


class TracingSettings(BaseModel):
    """OpenTelemetry traces and metrics of runs (see runtime/tracing.py)."""

    model_config = ConfigDict(extra="forbid")

    exporter: Literal["jsonl", "console", "otlp", "none"] = Field(
        "jsonl",
        description="jsonl: a file per run under runs_dir (what `dagentic trace` "
        "and `dagentic report` read); console: stderr; otlp: a "
        "collector; none: no spans and no metrics.",
    )
    otlp: OtlpSettings = Field(default_factory=OtlpSettings)
    metrics: bool = Field(True, description="Record metrics too.")
    metrics_interval: float = Field(
        60.0, gt=0, description="Seconds between metric exports (and one at exit)."
    )
    export_delay: float = Field(
        1.0, gt=0, description="Seconds spans wait to be exported in batches."
    )
    record_content: bool = Field(
        False,
        description="Record prompts, replies, tool arguments and outputs in spans "
        "(they may hold personal or secret data).",
    )
    service_name: str = Field("dagentic", description="The service.name resource attribute.")


class JournalSettings(BaseModel):
    """The durable run journal: every state change of a run, so that it can be resumed
    (``dagentic resume``), wait for approvals across restarts, and be listed
    (``dagentic runs``)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="Keep a durable journal of runs.")
    url: SecretStr | None = Field(
        None,
        description="Where: sqlite:///PATH or postgresql://USER@HOST:PORT/DB (psycopg, the "
        "postgres extra; several processes or machines then share it). Default: "
        "runs_dir/journal.sqlite.",
    )
    keep_days: float = Field(
        30.0,
        ge=0,
        description="Finished runs older than this many days are removed by `dagentic runs "
        "prune` (0: keep every run).",
    )
    lease: float = Field(
        30.0,
        gt=0,
        description="Seconds a run's owner holds it without renewing (renewed every third); "
        "another process may resume it after that, or at once when its owner's process on "
        "the same machine is gone.",
    )


class RaySettings(BaseModel):
    """The Ray cluster tool calls run on when ``execution.backend = "ray"`` (the ``ray``
    extra)."""

    model_config = ConfigDict(extra="forbid")

    address: str | None = Field(
        None,
        description="The cluster: HOST:PORT of its head (GCS), ray://HOST:PORT for Ray "
        "Client, or auto (RAY_ADDRESS, else the cluster started on this machine). None "
        "starts a local Ray on 127.0.0.1 for this process.",
    )
    namespace: str = Field("dagentic", description="The Ray namespace of tasks and actors.")
    connect_timeout: float = Field(
        30.0, gt=0, description="Seconds to reach the cluster before the run fails."
    )
    lost_call_retries: int = Field(
        3,
        ge=0,
        description="Times a call of an idempotent tool is run again when its worker or node "
        "dies under it (Ray's own task retries are off: this is the one count).",
    )
    by_reference_bytes: int = Field(
        1 << 20,
        ge=0,
        description="Outputs larger than this (pickled) stay in Ray's object store: a step "
        "that takes one as an argument gets it from the node that made it, not from the "
        "driver.",
    )
    num_cpus: int | None = Field(
        None, ge=1, description="A local Ray (no address): CPUs it may use (default: all)."
    )
    tool_resources: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description="What one call of a tool needs of a node, over what the tool declares "
        '(a plan step\'s resources: win): {"code.python": {"docker": 1}} runs sandboxed code '
        "only on nodes that offer a docker resource.",
    )

    @field_validator("tool_resources")
    @classmethod
    def _resources(cls, value: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        from .resources import resource_problems

        for tool_name, resources in value.items():
            for problem in resource_problems(resources):
                raise ValueError(f"{tool_name}: {problem}")
        return value


class ExecutionSettings(BaseModel):
    """Where tool calls run."""

    model_config = ConfigDict(extra="forbid")

    backend: Literal["process", "ray"] = Field(
        "process",
        description="process: in this process (async tools on the event loop, others in "
        "worker threads); ray: each call a Ray task, or a call on a Ray actor for tools "
        "that keep state.",
    )


class LibrarySettings(BaseModel):
    """The plan library: plan files of folders, and the plans `dagentic ask` made that ran
    and passed verification, which the agent routes goals to."""

    model_config = ConfigDict(extra="forbid")

    folders: list[Path] = Field(
        default_factory=lambda: [Path("plans")],
        description="Folders whose *.yaml plan files are in the library.",
    )
    path: Path | None = Field(
        None,
        description="Where verified plans of `dagentic ask` are saved (default: the library "
        "folder of runs_dir, next to the journal: .dagentic/runs/library).",
    )
    save: bool = Field(True, description="Save the plans `dagentic ask` made that passed.")
    plugin_plans: bool = Field(
        True,
        description="Also the plan folders installed plugins ship (after `folders`): the sql "
        "plugin's plans over its sample data while no sql sources are configured.",
    )


class CacheSettings(BaseModel):
    """The model-response and tool-result caches: one SQLite file next to the runs
    (``dagentic cache stats``, ``dagentic cache clear``)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="Use the caches at all.")
    models: bool = Field(
        True, description="Reuse the reply of an identical deterministic model call."
    )
    tools: bool = Field(True, description="Reuse the output of a cacheable tool's call.")
    force: bool = Field(
        False,
        description="Cache model calls at any temperature, not only temperature 0 (their "
        "replies are then one sample, kept).",
    )
    path: Path | None = Field(None, description="The cache file (default: runs_dir/cache.sqlite).")


class GuardrailSettings(BaseModel):
    """What may leave the machine in a prompt sent to a remote model."""

    model_config = ConfigDict(extra="forbid")

    outbound: Literal["redact", "block", "off"] = Field(
        "redact",
        description="Secrets and personal data in a prompt to a remote model: redact them, "
        "block the call, or off.",
    )
    exempt_local: bool = Field(
        True,
        description="Prompts to models on this machine (the local provider, an endpoint on "
        "127.0.0.1, ::1 or localhost) are not checked.",
    )


class ServeSettings(BaseModel):
    """``dagentic serve``: the HTTP API and web page over the runtime and the journal."""

    model_config = ConfigDict(extra="forbid")

    token: SecretStr | None = Field(
        None,
        description="The bearer token every request but the health check must send; unset: "
        "one is made at each start and printed once. Required to bind beyond loopback.",
    )
    host: str = Field("127.0.0.1", description="The address to listen on.")
    port: int = Field(8321, ge=0, le=65535, description="The port (0: any free one).")
    max_body_bytes: int = Field(
        1_000_000, ge=1024, description="Bytes a request body may have (else 413)."
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description="Origins other web pages may call the API from (none: CORS is off).",
    )
    tools: list[str] = Field(
        default_factory=lambda: ["*"],
        description="Tools runs started through the API may use, as names or patterns "
        '(fnmatch: "sql.*"); a plan that names another is refused.',
    )
    max_active_runs: int = Field(
        500, ge=1, description="Runs the server runs at once; more are refused (503)."
    )
    resume: bool = Field(
        True,
        description="Go on with the journal's interrupted runs, and with waiting runs once "
        "every call they wait for is decided (at start, then every few seconds).",
    )


class _CoreToml(TomlConfigSettingsSource):
    def __call__(self) -> dict[str, Any]:
        return core_only(self.settings_cls, super().__call__())


class _CorePyproject(PyprojectTomlConfigSettingsSource):
    def __call__(self) -> dict[str, Any]:
        return core_only(self.settings_cls, super().__call__())


class Settings(BaseSettings):
    """Every knob of the core, with its default, and the sections of plugins, each read
    by its plugin with :meth:`plugin`. Errors name the file or environment variable of the
    value that is wrong (:class:`~dagentic.SettingsError`)."""

    model_config = SettingsConfigDict(
        env_prefix="DAGENTIC_",
        env_nested_delimiter="__",
        toml_file="dagentic.toml",
        pyproject_toml_table_header=("tool", "dagentic"),
        extra="forbid",
    )

    concurrency: int = Field(64, ge=1, description="Steps running at once in one run.")
    foreach_concurrency: int = Field(
        16, ge=1, description="Items of one foreach step running at once (max_parallel wins)."
    )
    tool_concurrency: dict[str, int] = Field(
        default_factory=dict, description="Calls running at once per tool name."
    )
    worker_threads: int = Field(
        16,
        ge=1,
        description="Worker threads of the whole process: synchronous tools and dagentic's "
        "blocking calls, shared by every executor (the last one created sets it).",
    )
    default_timeout: float | None = Field(
        300.0, gt=0, description="Seconds per attempt when neither step nor tool sets one."
    )
    max_run_output_size: int = Field(
        MAX_RUN_OUTPUT_SIZE,
        ge=1,
        description="Characters and items of step outputs one run keeps, in all (foreach "
        "items included); a step whose output would pass it fails with resource_limit. "
        "In memory: about 1 byte a character of text, 13-20 bytes an item of records.",
    )
    fail_fast: bool = Field(False, description="Cancel the rest of a run at its first failure.")
    runs_dir: Path = Field(
        Path(".dagentic/runs"), description="Where run files (spans, metrics) are kept."
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    sandbox: SandboxSettings = Field(default_factory=SandboxSettings)
    model: ModelSettings = Field(default_factory=ModelSettings)
    agent: AgentSettings = Field(default_factory=AgentSettings)
    memory: MemorySettings = Field(default_factory=MemorySettings)
    tracing: TracingSettings = Field(default_factory=TracingSettings)
    journal: JournalSettings = Field(default_factory=JournalSettings)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    library: LibrarySettings = Field(default_factory=LibrarySettings)
    guardrails: GuardrailSettings = Field(default_factory=GuardrailSettings)
    execution: ExecutionSettings = Field(default_factory=ExecutionSettings)
    ray: RaySettings = Field(default_factory=RaySettings)
    serve: ServeSettings = Field(default_factory=ServeSettings)

    _sources: Sources = PrivateAttr(default_factory=Sources)
    _plugins: dict[type[BaseModel] | str, BaseModel] = PrivateAttr(default_factory=dict)

    def __init__(self, **values: Any) -> None:
        cls = type(self)
        arguments = {k: v for k, v in values.items() if not k.startswith("_")}
        for key, value in arguments.items():  # a plugin's section: kept for the plugin
            if key not in cls.model_fields and isinstance(value, Mapping | BaseModel):
                del values[key]
        prefix = values.get("_env_prefix") or cls.model_config.get("env_prefix") or ""
        sources = Sources.read(cls, arguments, prefix)
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise SettingsError(sources.problems((), cls, exc)) from exc
        except SourceError as exc:  # a variable's JSON does not parse, say
            raise SettingsError([f"{prefix}* environment variables: {exc}"]) from exc
        self._sources = sources
        hold(self)  # its secrets (the plugins' too) never leave dagentic in text

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _CoreToml(settings_cls), _CorePyproject(settings_cls))

    def plugin(self, model: type[M]) -> M:
        """The settings of the plugin whose settings model is ``model``, read from the
        section the model names, validated on first use and the same object after: cheap
        enough to call in every tool call. A plugin declares and reads its settings so::

            class HelloSettings(BaseModel):
                model_config = ConfigDict(extra="forbid")
                section: ClassVar[str] = "hello"  # [hello], DAGENTIC_HELLO__GREETING

                greeting: str = "Hello"

            @hookimpl
            def register_settings() -> list[type[BaseModel]]:
                return [HelloSettings]

            @tool(name="hello.greet")
            def greet(name: str, context: ToolContext) -> str:
                config = context.settings.plugin(HelloSettings)
                return f"{config.greeting}, {name}"

        Raises :class:`~dagentic.SettingsError` naming the file or environment variable
        of each invalid value, and :class:`~dagentic.PluginError` if ``model`` names no
        section (see :func:`section_of`)."""
        # By model and by section. Read through __pydantic_private__: `self._plugins` takes
        # pydantic's slow path for private attributes, dearer than all the rest here.
        cache: dict[Any, Any] = self.__pydantic_private__["_plugins"]  # type: ignore[index]
        found: M | None = cache.get(model)
        if found is not None:
            return found
        section = section_of(model)
        other = cache.get(section)
        if other is not None and type(other) is not model:
            raise PluginError(
                f"settings section [{section}] is read with {type(other).__name__} already; "
                f"{model.__name__} cannot read it too: give it a section of its own"
            )
        try:
            read = model.model_validate(self._sources.section(section, model))
        except ValidationError as exc:
            raise SettingsError(self._sources.problems((section,), model, exc)) from exc
        kept: M = cache.setdefault(model, read)
        cache.setdefault(section, kept)
        return kept

    def check_sections(self, models: Iterable[type[BaseModel]]) -> None:
        """Check every section against the core's and ``models`` (every installed plugin's
        settings model): a section nobody reads (a typo, a plugin that is not installed)
        is an error with a did-you-mean, and so is every invalid value in a plugin section
        that is set. All problems come in one :class:`~dagentic.SettingsError`."""
        known = {section_of(model): model for model in models}
        core = type(self).model_fields
        tables = [name for name, info in core.items() if is_table(info.annotation)]
        problems = self._sources.unknown_sections(core, tables, list(known))
        for section, model in sorted(known.items()):
            if self._sources.is_set(section):  # unset sections are checked when read
                try:
                    self.plugin(model)
                except SettingsError as exc:
                    problems.extend(exc.problems)
        if problems:
            raise SettingsError(problems)

    def origin(self, *path: str) -> str:
        """Where the value at ``path`` (``"sql", "max_rows"``) came from: ``arguments``,
        the name of an environment variable, a file (``dagentic.toml``,
        ``pyproject.toml``) or ``default``."""
        return self._sources.origin(path)


def section_of(model: Any) -> str:
    """The section a plugin's settings model reads: its ``section`` class variable. A model
    without one, or with the name of a core section, is a :class:`~dagentic.PluginError`
    saying what to fix."""
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise PluginError(f"{model!r} is not a pydantic model class; return settings models")
    section = getattr(model, "section", None)
    if not isinstance(section, str) or not SECTION_NAME.match(section):
        raise PluginError(
            f"settings model {model.__name__} has no valid section name ({section!r}); give "
            "it a class variable of lowercase letters, digits and _, e.g. "
            "section: ClassVar[str] = 'weather'"
        )
    if section in Settings.model_fields:
        raise PluginError(
            f"settings model {model.__name__} names section [{section}], which is the core's; "
            "choose another name"
        )
    return section
