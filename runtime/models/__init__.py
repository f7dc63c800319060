"""Models behind one async :class:`Model` protocol: an OpenAI-compatible endpoint, a local
GGUF model on llama-cpp-python (the embedded default), and a scripted model for tests."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import Message, Model, ModelError, ModelReply, Price, parse_json
from .gateway import ROLES, Models
from .local import DEFAULT_MODEL, LlamaCppModel, default_model_path
from .openai_compat import OpenAIModel
from .scripted import ScriptedModel, estimate_tokens

if TYPE_CHECKING:
    from ..guardrails import Outbound

__all__ = [
    "DEFAULT_MODEL",
    "LlamaCppModel",
    "Message",
    "Model",
    "ModelError",
    "ModelReply",
    "Models",
    "OpenAIModel",
    "Price",
    "ScriptedModel",
    "default_model_path",
    "estimate_tokens",
    "make_model",
    "make_models",
    "parse_json",
]


def make_model(settings: Any, spec: str | None = None) -> Model:
    """The model the settings (``model.*``) describe, or ``spec``: ``local``,
    ``local:PATH.gguf``, or ``openai:NAME`` (endpoint and key from settings)."""
    config = settings.model
    provider, name = config.provider, config.name
    if spec:
        provider, _, rest = spec.partition(":")
        if provider not in ("local", "openai"):
            raise ModelError(
                f"model: unknown provider {provider!r} in {spec!r}; use local, "
                "local:PATH.gguf or openai:NAME"
            )
        name = rest or (name if provider == config.provider else None)
    if provider == "local":
        return LlamaCppModel(
            name,
            context_size=config.context_size,
            threads=config.threads,
            max_tokens=config.max_tokens,
            temperature=config.temperature,
        )
    if not name:
        raise ModelError(
            "model: the openai provider needs a model name: --model openai:NAME "
            "or the model.name setting"
        )
    return OpenAIModel(
        name,
        base_url=config.base_url,
        api_key=config.api_key.get_secret_value() if config.api_key else None,
        structured_output=config.structured_output,
        stream=config.stream,
        timeout=config.timeout,
        max_retries=config.max_retries,
        max_tokens=config.max_tokens,
        temperature=config.temperature,
        outbound=_outbound(settings, config.base_url),
    )


def _outbound(settings: Any, base_url: str | None) -> Outbound:
    """What the guardrails do to prompts sent to this endpoint (``guardrails.outbound``):
    ``off`` for an endpoint on this machine while ``guardrails.exempt_local`` holds."""
    from ..guardrails import is_local_url

    config = getattr(settings, "guardrails", None)
    if config is None:
        return "off"
    if config.exempt_local and base_url and is_local_url(base_url):
        return "off"
    outbound: Outbound = config.outbound
    return outbound


def make_models(settings: Any, spec: str | None = None) -> Models:
    """The models the settings name: the main one (``spec``, as ``--model``, else
    ``model.*``), one per role set in ``model.planner`` ... ``model.memory``, and the
    ``model.fallbacks``. A model named twice is made once."""
    made: dict[str, Model] = {}

    def model(name: str | None, setting: str) -> Model:
        key = name or ""
        if key not in made:
            try:
                made[key] = make_model(settings, name)
            except ModelError as exc:
                if not name:
                    raise
                raise ModelError(f"{setting} = {name!r}: {exc.message}") from exc
        return made[key]

    config = settings.model
    main = model(spec, "--model")
    roles = {
        role: model(getattr(config, role), f"model.{role}")
        for role in ROLES
        if getattr(config, role)
    }
    fallbacks = [model(name, "model.fallbacks") for name in config.fallbacks]
    return Models(main, roles, fallbacks)
