"""What the sources of settings said, as read: ``Settings()`` arguments, ``DAGENTIC_*``
variables, ``dagentic.toml`` and ``pyproject.toml``'s ``[tool.dagentic]``.

:class:`Sources` is the snapshot a :class:`~dagentic.Settings` keeps, so that a plugin's
section can be validated when the plugin asks for it (the core cannot know the plugins'
models when it reads the files) and so that ``dagentic config show`` can say where each
value came from. Every error names that place.
"""

from __future__ import annotations

import difflib
import functools
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, get_args, get_origin

from pydantic import BaseModel, ValidationError, create_model
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PyprojectTomlConfigSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)
from pydantic_settings import SettingsError as SourceError

from .errors import SettingsError

__all__ = ["Layer", "Sources", "core_only", "is_table"]


@dataclass(frozen=True, slots=True)
class Layer:
    """What one source held, as read, and how it spells a section (``[{}]`` in
    dagentic.toml, ``[tool.dagentic.{}]`` in pyproject.toml)."""

    origin: str
    spelling: str
    data: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Sources:
    """Every source as read, once. Precedence, highest first: ``arguments``, the
    variables starting with ``prefix`` (``environ``), then ``files`` in order."""

    arguments: Layer = Layer("arguments", "'{}'", {})
    files: tuple[Layer, ...] = ()
    environ: Mapping[str, str] = field(default_factory=dict)
    prefix: str = ""

    @classmethod
    def read(
        cls, settings_cls: type[BaseSettings], arguments: Mapping[str, Any], prefix: str
    ) -> Sources:
        """Read the files ``settings_cls`` names and the variables starting with
        ``prefix`` (in any case, as pydantic-settings matches them)."""
        toml = TomlConfigSettingsSource(settings_cls)
        pyproject = PyprojectTomlConfigSettingsSource(settings_cls)
        return cls(
            Layer("arguments", "'{}'", arguments),
            (
                Layer(str(settings_cls.model_config.get("toml_file")), "[{}]", toml.toml_data),
                Layer("pyproject.toml", "[tool.dagentic.{}]", pyproject.toml_data),
            ),
            {k: v for k, v in os.environ.items() if k.upper().startswith(prefix.upper())},
            prefix,
        )

    def origin(self, path: tuple[str, ...]) -> str:
        """Where the value at ``path`` came from: ``arguments``, a variable's name, a
        file, or ``default``."""
        if _holds(self.arguments.data, path):
            return self.arguments.origin
        found, depth = None, 0
        wanted = tuple(p.lower() for p in path)
        for name in self.environ:
            parts = tuple(name[len(self.prefix) :].lower().split("__"))
            if len(parts) > depth and wanted[: len(parts)] == parts:
                found, depth = name, len(parts)
        if found is not None:
            return found
        return next((f.origin for f in self.files if _holds(f.data, path)), "default")

    def is_set(self, section: str) -> bool:
        """Whether a file, a variable or an argument says anything of ``section``."""
        layers = (self.arguments, *self.files)
        return bool(self._variables(section)) or any(section in la.data for la in layers)

    def section(self, section: str, model: type[BaseModel]) -> Any:
        """What the sources say of ``section``, merged by precedence over the defaults of
        ``model``'s sub-models (so ``[web.brave] api_key = ...`` keeps brave's ``url``)."""
        try:
            defaults = _nested_defaults(model())
        except ValidationError:  # the model has required settings
            defaults = {}
        parts = [defaults, *(layer.data.get(section) for layer in reversed(self.files))]
        parts += [self._section_variables(section, model), self.arguments.data.get(section)]
        data: Any = {}
        for part in parts:
            if isinstance(part, BaseModel):
                part = part.model_dump(exclude_unset=True)
            if part is not None:
                both = isinstance(data, Mapping) and isinstance(part, Mapping)
                data = _merged(data, part) if both else part
        return data

    def problems(
        self, section: tuple[str, ...], model: type[BaseModel], error: ValidationError
    ) -> list[str]:
        """Each problem of ``error`` (validating ``model`` at ``section``), naming the
        setting and where its value came from."""
        problems = []
        for item in error.errors(include_url=False):
            loc = tuple(str(p) for p in item["loc"])
            path = (*section, *loc)
            dotted = ".".join(path)
            where = _where(self.origin(path))
            if item["type"] == "extra_forbidden":
                close = difflib.get_close_matches(loc[-1], _fields_at(model, loc[:-1]), n=1)
                hint = f"; did you mean '{'.'.join((*path[:-1], close[0]))}'?" if close else ""
                problems.append(f"{where}: unknown setting '{dotted}'{hint}")
            elif item["type"] == "missing":
                variable = self.prefix + "__".join(p.upper() for p in path)
                problems.append(f"{dotted} is required: set it in dagentic.toml or with {variable}")
            else:
                problems.append(f"{where}: {dotted}: {item['msg']}")
        return problems

    def unknown_sections(
        self, core: Iterable[str], tables: list[str], known: list[str]
    ) -> list[str]:
        """A problem for each section that neither the core (its settings ``core``, of
        which ``tables`` are sections) nor an installed plugin (``known``) reads."""
        taken = {*core, *known}
        listed = (
            f"(sections come from the core: {', '.join(sorted(tables))}; and from installed "
            f"plugins: {', '.join(sorted(known)) or 'none'})"
        )
        problems = []
        for layer in (self.arguments, *self.files):
            for key in layer.data:
                if key not in taken:
                    close = difflib.get_close_matches(key, [*tables, *known], n=1)
                    hint = f"; did you mean {layer.spelling.format(close[0])}?" if close else ""
                    spelled = layer.spelling.format(key)
                    problems.append(
                        f"{_where(layer.origin)}: unknown section {spelled}{hint} {listed}"
                    )
        for name in sorted(self.environ):
            section, nested, rest = name[len(self.prefix) :].partition("__")
            if nested and section.lower() not in taken:
                close = difflib.get_close_matches(section.lower(), [*tables, *known], n=1)
                hint = f"; did you mean {self.prefix}{close[0].upper()}__{rest}?" if close else ""
                problems.append(
                    f"{_where(name)}: unknown section '{section.lower()}'{hint} {listed}"
                )
        return problems

    def _variables(self, section: str) -> list[str]:
        """The names of the ``DAGENTIC_<SECTION>`` and ``DAGENTIC_<SECTION>__*`` variables."""
        start = len(self.prefix)
        return [n for n in self.environ if n[start:].lower().split("__")[0] == section]

    def _section_variables(self, section: str, model: type[BaseModel]) -> Any:
        """What the variables of ``section`` say, parsed as pydantic-settings parses the
        core's (``__`` nests, lists and tables are JSON)."""
        names = self._variables(section)
        if not names:
            return None
        source = EnvSettingsSource(
            _variables_reader(section, model),
            case_sensitive=False,
            env_prefix=self.prefix,
            env_nested_delimiter="__",
        )
        source.env_vars = {n.lower(): self.environ[n] for n in names}
        try:
            return source().get(section)
        except SourceError as exc:
            where = _where(" and ".join(sorted(names)))
            raise SettingsError([f"{where}: {exc}; lists and tables are JSON"]) from exc


def core_only(settings_cls: type[BaseSettings], data: dict[str, Any]) -> dict[str, Any]:
    """A file's values without the plugins' sections (tables that are not core settings):
    :class:`Sources` keeps those for the plugins."""
    core = settings_cls.model_fields
    return {k: v for k, v in data.items() if k in core or not isinstance(v, dict)}


def is_table(annotation: Any) -> bool:
    """Whether a setting of this type is a table (a section of its own)."""
    annotation = _unwrapped(annotation)
    model = isinstance(annotation, type) and issubclass(annotation, BaseModel)
    return model or get_origin(annotation) is dict


def _where(origin: str) -> str:
    """An origin as an error message starts: the file, or which variable or arguments."""
    if origin == "arguments":
        return "Settings() arguments"
    if origin.endswith(".toml") or origin == "default":
        return origin
    return f"environment variable {origin}"


def _holds(data: Any, path: tuple[str, ...]) -> bool:
    """Whether ``data`` (a source's raw values) sets the value at ``path``, or a whole
    list or table above it."""
    for depth, key in enumerate(path):
        if isinstance(data, BaseModel):
            if key not in data.model_fields_set:
                return False
            data = getattr(data, key)
        elif isinstance(data, Mapping):
            if key not in data:
                return False
            data = data[key]
        else:
            return depth > 0
    return True


def _nested_defaults(instance: BaseModel) -> dict[str, Any]:
    """The values of ``instance``'s sub-models, as tables to merge what sources say into."""
    tables: dict[str, Any] = {}
    for name in type(instance).model_fields:
        value = getattr(instance, name)
        if isinstance(value, BaseModel):
            own = {key: getattr(value, key) for key in type(value).model_fields}
            tables[name] = {**own, **_nested_defaults(value)}
    return tables


def _merged(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``update``, tables merged key by key."""
    result = dict(base)
    for key, value in update.items():
        old = result.get(key)
        if isinstance(old, Mapping) and isinstance(value, Mapping):
            value = _merged(old, value)
        result[key] = value
    return result


def _unwrapped(annotation: Any) -> Any:
    """``X`` of ``X | None``."""
    args = [a for a in get_args(annotation) if a is not type(None)]
    return args[0] if get_origin(annotation) is not None and len(args) == 1 else annotation


def _fields_at(model: type[BaseModel], loc: tuple[str, ...]) -> list[str]:
    """The setting names of the model at ``loc`` inside ``model`` (for a did-you-mean)."""
    current: Any = model
    keys = iter(loc)
    for key in keys:
        is_model = isinstance(current, type) and issubclass(current, BaseModel)
        info = current.model_fields.get(key) if is_model else None
        current = _unwrapped(info.annotation) if info is not None else None
        if get_origin(current) is dict:  # the next key is the table's own
            next(keys, None)
            current = _unwrapped(get_args(current)[1])
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


class _VariablesReader(BaseSettings):
    """Base of the one-setting classes that read a plugin section's variables."""

    model_config = SettingsConfigDict(extra="ignore")


@functools.cache
def _variables_reader(section: str, model: type[BaseModel]) -> type[BaseSettings]:
    reader: type[BaseSettings] = create_model(
        f"{model.__name__}Variables",
        __base__=_VariablesReader,
        **{section: (model | None, None)},  # type: ignore[call-overload]
    )
    return reader
