"""Cost per million features against fidelity: cheaper scoring must rank features like the full one.

One run, one store. The store holds planted features (known rules, 32-token windows,
10 top + 50 quantile + 50 random, scored by the faithful rule simulator) and real
features (SmolLM2-135M layer 6, identity dictionary, extracted here unless
``--real-store`` names an extracted store; scored by a noisy oracle that knows the true
activations: ``q * truth + N(0, noise)``, ``q`` drawn per explanation). Every feature
gets a right explanation and a wrong one.

Each scoring setting runs through the real engine and store (``score_features``):
today's (100 windows of 32 tokens, all at once) and cheaper ones (shorter windows,
adaptive rounds stopped by the bootstrap interval). Against today's scores it prints
Spearman rank correlation across all explanations, mean absolute score difference,
and AUROC of right vs wrong explanations; with o200k input tokens per feature of the
requests actually sent, the cached share (provider minimums applied), and dollars per
million features for explanation + simulation at gpt-4o-mini and claude-haiku-4-5 list
prices, live and through the batch API.

Prices use the prompt-log-prob (all-at-once) simulation prompt, as the cost figures in
the issue do, with one output token per call (a completion endpoint needs one); the
explanation's output is the faithful explainer's answer counted with o200k. Rows before
the dense ones use OpenAI's ``tok<TAB>unknown`` layout they were first measured with;
the offline simulators read both layouts alike, so the table measures what fewer or
shorter windows do to fidelity, not what the denser layout does to a real LLM.

    TIKTOKEN_CACHE_DIR=... .venv/bin/python benchmarks/cost.py [--real-store PATH]
"""

from __future__ import annotations

import argparse
import math
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from featurelens.core.host.protocols import LLMRequest, LLMResponse
from featurelens.core.selection import Selection, stream_records
from featurelens.core.store.database import Store
from featurelens.labelers.explain_defaults import with_provider_defaults
from featurelens.labelers.explain_grouped import grouped_request
from featurelens.labelers.explain_grouped import per_request as grouped_per_request
from featurelens.labelers.explainers import TokenActivationsExplainer
from featurelens.llm.engine import EngineSettings
from featurelens.llm.pricing import DEFAULT_PRICES
from featurelens.llm.prompt_cache import cached_tokens
from featurelens.llm.request_tokens import Counter
from featurelens.scorers.score_jobs import ScoreSpec, score_features
from featurelens.testing.oracle import NoisyOracle, Planted
from featurelens.testing.planted_features import (
    PLANTED,
    RuleSimulator,
    planted_records,
    write_planted_store,
)

LLMS = ("openai:gpt-4o-mini", "anthropic:claude-haiku-4-5")


@dataclass(frozen=True)
class Setting:
    label: str
    explain: tuple[int, int, int, str]  #: explainer (window, n_examples, features per request, style)
    options: tuple[tuple[str, object], ...]


#: the all-at-once layout before the dense one, in the window order before stratified rounds,
#: with the pooled bootstrap interval every row before the stratified bootstrap used
OPENAI = (("line_format", "openai"), ("order", "shuffled"), ("bootstrap", "pooled"), ("round_size", "fixed"))


def _adaptive(width: float, window: int, round_windows: int = 10) -> tuple[tuple[str, object], ...]:
    return (("adaptive", True), ("ci_width", width), ("round_windows", round_windows), ("window", window),
            *OPENAI)


def _dense(width: float, window: int, round_windows: int = 10, **more: object) -> tuple[tuple[str, object], ...]:
    # the rows measured before stratified rounds keep their order, and all before the
    # stratified bootstrap its pooled interval
    more = {"order": "shuffled", "bootstrap": "pooled", "round_size": "fixed", **more}
    return (("adaptive", True), ("ci_width", width), ("round_windows", round_windows), ("window", window),
            ("line_format", "dense"), *more.items())


def _api_explain() -> tuple[int, int, int, str]:
    """What explain/label send an API model by default: the explainer's defaults, grouped,
    with the windows a grouped default request shows (:mod:`featurelens.labelers.explain_defaults`)."""
    explainer = TokenActivationsExplainer()
    options = with_provider_defaults({}, "openai:gpt-4o-mini", explainer)
    return (explainer.window, int(options.get("n_examples", explainer.n_examples)),
            int(options.get("features_per_request", 1)), explainer.style)


def _default_explain() -> tuple[int, int, int, str]:
    """The explainer's own defaults: (window, n_examples, features per request, style)."""
    explainer = TokenActivationsExplainer()
    return explainer.window, explainer.n_examples, grouped_per_request({}), explainer.style


#: the cheapest explainer setting measured before: 6 windows of 16 tokens, 4 per request
OLD_SHORT = (16, 6, 4, "table")  #: in the token table the first rows were measured with
SHORT = (16, 6, 4, "compact")  #: in the compact prompt (the explainer's default style)

#: the API explanation default before grouped requests showed 6 windows: 10 of 16 tokens, 4 a request
GROUPED10 = (16, 10, 4, "compact")
#: the simulation defaults before this section's levers: dense lines, stratified rounds, pooled interval
STRAT_DENSE = _dense(0.25, 16, order="stratified")
#: the same with the terse instruction (the bootstrap last, so rows can swap it)
TERSE = (("adaptive", True), ("ci_width", 0.25), ("round_windows", 10), ("window", 16),
         ("line_format", "terse"), ("order", "stratified"), ("round_size", "fixed"), ("bootstrap", "pooled"))

SETTINGS = [
    Setting("today: 100 x 32 tok", (32, 10, 1, "table"), (("adaptive", False), ("window", 32), *OPENAI)),
    Setting("old defaults (ci<.2 r10 32)", (32, 10, 1, "table"), (("adaptive", True), ("ci_width", 0.2),
                                                         ("round_windows", 10), ("window", 32), *OPENAI)),
    Setting("100 x 16 tok", (16, 10, 1, "table"), (("adaptive", False), ("window", 16), *OPENAI)),
    Setting("adapt ci<.15 r10, 32 tok", (32, 10, 1, "table"), _adaptive(0.15, 32)),
    Setting("adapt ci<.1 r10, 32 tok", (32, 10, 1, "table"), _adaptive(0.1, 32)),
    Setting("adapt ci<.2 r20, 32 tok", (32, 10, 1, "table"), _adaptive(0.2, 32, 20)),
    Setting("adapt ci<.2 r10, 16 tok", (16, 10, 1, "table"), _adaptive(0.2, 16)),
    Setting("ci<.15 r10 32, expl 4/req", (32, 10, 4, "table"), _adaptive(0.15, 32)),
    Setting("ci<.2 r10 16, expl 6x16 4/req", OLD_SHORT, _adaptive(0.2, 16)),
    # the dense line format (tok<TAB>?), with the short explainer setting in the compact prompt
    Setting("dense ci<.2 r10 16", SHORT, _dense(0.2, 16)),
    Setting("dense ci<.2 r10 12", SHORT, _dense(0.2, 12)),
    Setting("dense ci<.2 r10 8", SHORT, _dense(0.2, 8)),
    Setting("dense ci<.25 r10 16", SHORT, _dense(0.25, 16)),
    Setting("dense ci<.25 r10 12", SHORT, _dense(0.25, 12)),
    Setting("dense ci<.25 r10 8", SHORT, _dense(0.25, 8)),
    Setting("dense ci<.2 r5 12", SHORT, _dense(0.2, 12, 5)),
    Setting("dense ci<.2 first20 r10 12", SHORT, _dense(0.2, 12, first_round=20)),
    Setting("dense ci<.2 r10 12 rand8", SHORT, _dense(0.2, 12, random_window=8)),
    Setting("dense ci<.3 r10 16", SHORT, _dense(0.3, 16)),
    # the defaults of the section before (dense, shuffled, width 0.25), pinned
    Setting("previous defaults", _default_explain(), _dense(0.25, 16)),
    Setting("previous defaults, expl 6x16 4/req", SHORT, _dense(0.25, 16)),
    Setting("previous defaults, expl 10x16 4/req", (16, 10, 4, "compact"), _dense(0.25, 16)),
    # stratified rounds (order=stratified) and provider-aware explanation grouping
    Setting("strat ci<.25 r10 16, expl 4/req", GROUPED10, _dense(0.25, 16, order="stratified")),
    Setting("strat ci<.3 r10 16, expl 4/req", GROUPED10, _dense(0.3, 16, order="stratified")),
    Setting("strat ci<.3 r10 16, expl 6x16 4/req", SHORT, _dense(0.3, 16, order="stratified")),
    # levers left then on the explanation side: shorter explainer windows, larger groups
    Setting("earlier defaults, API, expl 12-tok windows", (12, 10, 4, "compact"), STRAT_DENSE),
    Setting("earlier defaults, API, expl 8/req", (16, 10, 8, "compact"), STRAT_DENSE),
    # the defaults before this section (dense lines, stratified rounds, pooled interval,
    # fixed rounds; API models 10 explainer windows 4 a request), pinned, then each lever
    Setting("earlier defaults, local (expl 1/req)", _default_explain(), STRAT_DENSE),
    Setting("earlier defaults, API (expl 10x16 4/req)", GROUPED10, STRAT_DENSE),
    Setting("+ terse prefix", GROUPED10, TERSE),
    Setting("+ terse, strat bootstrap", GROUPED10, (*TERSE[:-1], ("bootstrap", "stratified"))),
    Setting("+ terse, sized rounds", GROUPED10, (*TERSE[:-2], ("round_size", "sized"), TERSE[-1])),
    Setting("+ terse, expl 6x16 4/req", SHORT, TERSE),
    Setting("+ terse, expl 6x16, sized rounds", SHORT, (*TERSE[:-2], ("round_size", "sized"), TERSE[-1])),
    Setting("new defaults, local (expl 1/req)", _default_explain(), ()),
    Setting("new defaults, API (expl 4/req)", _api_explain(), ()),
]


class Simulators:
    """Oracle for registered explanations, the faithful rule simulator for the rest;
    counts o200k input tokens (total, shared prefix, cached per provider) of every request."""

    name = "bench"
    model = "oracle"
    capabilities = frozenset({"prompt_logprobs"})

    def __init__(self, oracle: NoisyOracle, counter: Counter):
        self.oracle, self.rule, self.counter = oracle, RuleSimulator(), counter
        self.calls = self.input = self.prefix = 0
        self.cached = {llm: 0 for llm in LLMS}

    async def complete(self, request: LLMRequest) -> LLMResponse:
        tokens = self.counter.request(request)
        self.calls += 1
        self.input += tokens.total
        self.prefix += tokens.prefix
        for llm in LLMS:
            self.cached[llm] += cached_tokens(*llm.split(":", 1), tokens)
        text = request.prompt or ""
        explanation = text.rsplit("Feature explanation: ", 1)[-1].split("\n", 1)[0].strip()
        return (self.oracle if explanation in self.oracle.explanations else self.rule).answer(request)


def prompt_kinds(counter: Counter) -> None:
    """Cacheable fraction per prompt kind: shared-prefix share, and what each provider caches."""
    from featurelens.labelers.explainers import HighlightedExplainer
    from featurelens.scorers import DetectionScorer, FuzzingScorer, SimulationScorer

    record = planted_records(length=32, n_top=10, n_quantile=50, n_random=50, seed=3)[0]
    explanation = PLANTED["digits"][1]
    modes = {"prompt-logprobs": frozenset({"prompt_logprobs"}), "output-logprobs": frozenset({"output_logprobs"}),
             "json": frozenset()}
    kinds = [("explain token-activations", TokenActivationsExplainer().requests(record)),
             ("explain token-activations table", TokenActivationsExplainer(style="table").requests(record)),
             ("explain token-activations 4/req", [grouped_request(TokenActivationsExplainer(), [record] * 4)]),
             ("explain highlighted", HighlightedExplainer().requests(record))]
    kinds += [(f"simulation {mode}", SimulationScorer(adaptive=False).requests(record, explanation, caps))
              for mode, caps in modes.items()]
    kinds.insert(5, ("simulation prompt-logprobs openai", SimulationScorer(adaptive=False, line_format="openai")
                     .requests(record, explanation, modes["prompt-logprobs"])))
    kinds += [(scorer.name, scorer.requests(record, explanation)) for scorer in (DetectionScorer(), FuzzingScorer())]
    print(f"{'prompt kind':<34}{'calls':>6}{'input':>8}{'prefix':>8}{'share':>7}  cached: "
          + "  ".join(f"{llm}" for llm in LLMS))
    for label, requests in kinds:
        counted = [counter.request(r) for r in requests]
        total, prefix = sum(c.total for c in counted), sum(c.prefix for c in counted)
        cached = [sum(cached_tokens(*llm.split(":", 1), c) for c in counted) for llm in LLMS]
        print(f"{label:<34}{len(requests):>6}{total:>8,}{prefix:>8,}{prefix / total:>7.0%}  "
              + "  ".join(f"{c / total:>{len(llm)}.0%}" for c, llm in zip(cached, LLMS, strict=True)))
    print("(cached: share of input a provider's prompt cache serves, its minimum prefix applied)\n")


def real_store(path: Path | None, workdir: Path, tokens: int) -> Path:
    if path is not None:
        return path
    target = workdir / "real.duckdb"
    print(f"extracting {tokens} tokens of SmolLM2 layer 6 (identity dictionary) for real features ...",
          file=sys.stderr)
    subprocess.run([sys.executable, "-m", "featurelens", "extract", "--model", "smollm2", "--hookpoint",
                    "blocks.6.hook_resid_post", "--dictionary", "identity", "--corpus", "stdlib",
                    "--tokens", str(tokens), "--store", str(target)], check=True)
    return target


def spearman(a: list[float], b: list[float]) -> float:
    def ranks(values: list[float]) -> list[float]:
        order = sorted(range(len(values)), key=lambda i: values[i])
        out = [0.0] * len(values)
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
                j += 1
            for k in range(i, j + 1):
                out[order[k]] = (i + j) / 2
            i = j + 1
        return out
    ra, rb = ranks(a), ranks(b)
    ma, mb = sum(ra) / len(ra), sum(rb) / len(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb, strict=True))
    return cov / math.sqrt(sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb))


def auroc(right: list[float], wrong: list[float]) -> float:
    wins = sum(1.0 if r > w else 0.5 if r == w else 0.0 for r in right for w in wrong)
    return wins / (len(right) * len(wrong))


def auroc_difference(base: dict[str, float], cheap: dict[str, float], ids: list[str],
                     truth: dict[str, bool], resamples: int = 300) -> tuple[float, float]:
    """95 % paired bootstrap interval of AUROC(cheap) - AUROC(full), features resampled."""
    rng = random.Random(1)
    right = [i for i in ids if truth[i]]
    wrong = [i for i in ids if not truth[i]]
    deltas = []
    for _ in range(resamples):
        r = [rng.choice(right) for _ in right]
        w = [rng.choice(wrong) for _ in wrong]
        deltas.append(auroc([cheap[i] for i in r], [cheap[i] for i in w])
                      - auroc([base[i] for i in r], [base[i] for i in w]))
    deltas.sort()
    return deltas[int(0.025 * resamples)], deltas[int(0.975 * resamples) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--real-store", type=Path, default=None, help="an extracted store to take real features from")
    parser.add_argument("--real-tokens", type=int, default=8192)
    parser.add_argument("--real-features", type=int, default=120)
    parser.add_argument("--planted-seeds", type=int, default=20)
    parser.add_argument("--noise", type=float, default=2.0, help="oracle noise (sd on the 0-10 scale)")
    parser.add_argument("--prompt-kinds-only", action="store_true", help="only the cacheable-fraction table")
    parser.add_argument("--only", nargs="*", default=None,
                        help="only the settings whose label starts with these (the full score always runs)")
    args = parser.parse_args()
    if args.only:
        SETTINGS[1:] = [s for s in SETTINGS[1:] if any(s.label.startswith(o) for o in args.only)]
    counter = Counter()
    if not counter.exact:
        sys.exit("o200k is unavailable: put o200k_base.tiktoken in $TIKTOKEN_CACHE_DIR (see ANCHORS.md).")
    prompt_kinds(counter)
    if args.prompt_kinds_only:
        return
    started = time.perf_counter()
    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        source = real_store(args.real_store, workdir, args.real_tokens)
        with Store.open(source, read_only=True) as real:
            real_records = [r for chunk in stream_records(
                real, Selection("fire_count >= 20", None, args.real_features), 256) for r in chunk]
        planted = [r for seed in range(args.planted_seeds) for r in planted_records(
            length=32, n_top=10, n_quantile=50, n_random=50, seed=seed, dictionary_id=f"planted-{seed}")]
        store = Store.open(workdir / "bench.duckdb")
        write_planted_store(store, planted)
        write_planted_store(store, real_records, corpus_id="real-corpus", model_id="real-model")
        # explanations: right and wrong for every feature
        texts = [text for _, (_, text) in PLANTED.items()]
        rows, truth, registry = [], {}, {}
        for record in planted:
            right = texts[record.feature]
            wrong = texts[(record.feature + 1) % len(texts)]
            for tag, text in (("right", right), ("wrong", wrong)):
                rows.append((record.dictionary_id, record.feature, f"{record.dictionary_id}/{record.feature}/{tag}", text))
                truth[rows[-1][2]] = tag == "right"
        for record in real_records:
            for tag, quality in (("right", rng.uniform(0.1, 1.0)), ("wrong", rng.uniform(0.0, 0.3))):
                text = f"real feature {record.feature} explanation {tag}"
                registry[text] = Planted(record.dictionary_id, record.feature, quality)
                rows.append((record.dictionary_id, record.feature, f"{record.dictionary_id}/{record.feature}/{tag}", text))
                truth[rows[-1][2]] = tag == "right"
        store.insert("explanations", pl.DataFrame([
            {"explanation_id": eid, "dictionary_id": d, "feature": f, "explainer": "planted",
             "llm": "bench:planted", "text": text} for d, f, eid, text in rows]))
        oracle = NoisyOracle(planted + real_records, registry, noise=args.noise)
        n_features = len(planted) + len(real_records)
        print(f"{len(planted)} planted + {len(real_records)} real features, {len(rows)} explanations "
              f"(right and wrong); oracle noise {args.noise}; tokens counted with {counter.name}\n")

        # explanation cost per setting's window: o200k of the explainer's requests, faithful answer's output
        explain_cost: dict[tuple[int, int, int, str], tuple[float, float, float, dict[str, float], int]] = {}
        for window, n_examples, per_request, style in sorted({s.explain for s in SETTINGS}):
            explainer = TokenActivationsExplainer(window=window, n_examples=n_examples, style=style)
            total = prefix = out = 0
            cached = {llm: 0 for llm in LLMS}
            recovered = 0
            everything = planted + real_records
            for record in everything:
                for request in explainer.requests(record):
                    answer = RuleSimulator().answer(request).text
                    out += counter.text(answer) + (1 if per_request > 1 else 0)  # "N: " instead of "Explanation: "
                    if record.dictionary_id.startswith("planted"):
                        recovered += explainer.parse(record, [LLMResponse(answer)]) == texts[record.feature]
            requests = ([grouped_request(explainer, everything[i:i + per_request])
                         for i in range(0, len(everything), per_request)] if per_request > 1
                        else [r for record in everything for r in explainer.requests(record)])
            for request in requests:
                tokens = counter.request(request)
                total, prefix = total + tokens.total, prefix + tokens.prefix
                for llm in LLMS:
                    cached[llm] += cached_tokens(*llm.split(":", 1), tokens)
            explain_cost[(window, n_examples, per_request, style)] = (total / n_features, prefix / n_features, out / n_features,
                                    {llm: c / n_features for llm, c in cached.items()}, recovered)

        results = []
        settings = EngineSettings(progress=False, concurrency=16)
        done: dict[tuple, tuple] = {}
        for setting in SETTINGS:
            if setting.options in done:  # the same scoring: measured once
                results.append((setting, *done[setting.options]))
                continue
            simulators = Simulators(oracle, counter)
            store.execute("DELETE FROM llm_cache")  # each setting pays for every request it sends
            t0 = time.perf_counter()
            stats = score_features(store, ScoreSpec(f"bench:{setting.label}", "simulation", setting.options),
                                   provider=simulators, settings=settings)
            scores = dict(store.execute(
                "SELECT explanation_id, score FROM scores WHERE llm = ?", [f"bench:{setting.label}"]))
            windows = store.execute("SELECT avg(n_windows) FROM scores WHERE llm = ?",
                                    [f"bench:{setting.label}"])[0][0]
            done[setting.options] = (simulators, scores, windows, stats, time.perf_counter() - t0)
            results.append((setting, *done[setting.options]))
            print(f"  scored: {setting.label} ({stats.calls:,} calls, {time.perf_counter() - t0:.0f} s)",
                  file=sys.stderr)
        base_scores = results[0][2]

        header = (f"{'setting':<30}{'win':>6}{'expl in':>9}{'sim in':>8}{'prefix':>7}{'cached':>7}"
                  f"{'mini $/M':>10}{'batch':>7}{'haiku $/M':>10}{'batch':>7}{'spearman':>9}{'MAD':>7}{'AUROC':>7}")
        print(header)
        print("-" * len(header))
        verdicts = []
        for setting, sims, scores, windows, stats, seconds in results:
            e_total, e_prefix, e_out, e_cached, recovered = explain_cost[setting.explain]
            s_total = sims.input / len(rows)  # per explanation scored: one score per feature
            calls = sims.calls / len(rows)
            ids = [eid for eid in base_scores if base_scores[eid] is not None and scores.get(eid) is not None]
            rho = spearman([base_scores[i] for i in ids], [scores[i] for i in ids])
            mad = sum(abs(base_scores[i] - scores[i]) for i in ids) / len(ids)
            right = [scores[i] for i in ids if truth[i]]
            wrong = [scores[i] for i in ids if not truth[i]]
            area = auroc(right, wrong)
            base_area = auroc([base_scores[i] for i in ids if truth[i]], [base_scores[i] for i in ids if not truth[i]])
            dollars = []
            for llm in LLMS:
                price = DEFAULT_PRICES[llm]
                cached = e_cached[llm] + sims.cached[llm] / len(rows)
                per_feature = (e_total + s_total, e_out + calls, cached)
                for batch in (False, True):
                    dollars.append(price.cost(per_feature[0], per_feature[1], per_feature[2], batch))
            prefix_share = (e_prefix + sims.prefix / len(rows)) / (e_total + s_total)
            cached_share = (e_cached[LLMS[0]] + sims.cached[LLMS[0]] / len(rows)) / (e_total + s_total)
            print(f"{setting.label:<30}{windows:>6.1f}{e_total:>9,.0f}{s_total:>8,.0f}{prefix_share:>7.0%}"
                  f"{cached_share:>7.0%}{dollars[0] * 1e6:>10,.0f}{dollars[1] * 1e6:>7,.0f}"
                  f"{dollars[2] * 1e6:>10,.0f}{dollars[3] * 1e6:>7,.0f}{rho:>9.3f}{mad:>7.3f}{area:>7.3f}")
            delta = (auroc_difference(base_scores, scores, ids, truth) if setting is not SETTINGS[0]
                     else (0.0, 0.0))
            verdicts.append((setting, rho, area, base_area, dollars[1] * 1e6, e_total + s_total, recovered,
                             len(ids), stats, seconds, delta))
        print()
        for setting, rho, area, base_area, batch_mini, tokens, recovered, n, stats, seconds, delta in verdicts:
            strict = rho >= 0.95 and area >= base_area - 1e-9
            within = rho >= 0.95 and delta[1] >= 0
            verdict = "holds" if strict else ("holds within noise" if within else "LOST")
            print(f"{setting.label:<30} fidelity {verdict} (spearman {rho:.3f}; AUROC {area:.3f} vs full "
                  f"{base_area:.3f}, difference 95% CI [{delta[0]:+.3f}, {delta[1]:+.3f}]); "
                  f"{tokens:,.0f} o200k input tokens per feature; "
                  f"${batch_mini:,.0f} per M features at gpt-4o-mini batch; explainer recovered "
                  f"{recovered}/{len(planted)} planted rules; {n} scores compared; {stats.calls:,} calls "
                  f"in {seconds:.0f} s")
        strict = min((v for v in verdicts if v[1] >= 0.95 and v[2] >= v[3] - 1e-9), key=lambda v: v[4])
        print(f"\ncheapest setting whose AUROC is not lower at all: {strict[0].label}: ${strict[4]:,.0f} per million")
        cheapest = min((v for v in verdicts if v[1] >= 0.95 and v[10][1] >= 0), key=lambda v: v[4])
        print(f"cheapest setting with spearman >= 0.95 and AUROC not significantly lower: {cheapest[0].label}: ${cheapest[4]:,.0f} per million features "
              f"(explanation + simulation, gpt-4o-mini batch); target $100: "
              f"{'met' if cheapest[4] <= 100 else f'NOT met ({cheapest[4] / 100:.1f}x over)'}; "
              f"today ${verdicts[0][4]:,.0f}, ratio today/cheapest = {verdicts[0][4] / cheapest[4]:.2f}x")
        for v in verdicts:
            if v[0].label.startswith(("new defaults", "previous defaults", "earlier defaults", "+ ")):
                print(f"{v[0].label}: {v[5]:,.0f} o200k input tokens and ${v[4]:,.0f} per million features at "
                      f"gpt-4o-mini batch; target $100: "
                      f"{'met' if v[4] <= 100 else f'NOT met ({v[4] / 100:.2f}x over)'}")
        print(f"total {time.perf_counter() - started:.0f} s")
        store.close()


if __name__ == "__main__":
    main()
