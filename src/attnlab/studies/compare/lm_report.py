"""results.json of `attnlab compare --family lm` -> results.md (the plots: lm_plots.py):
perplexity at equal parameters and time, training tokens/s and memory against length,
decoding latency and cache bytes against context (with the context where recurrent decoding
overtakes the KV-cached Transformer), probe accuracies, and the papers' claims set against the
numbers, each with a verdict computed from them:

- Mamba (Gu & Dao 2023, abstract, sec. 4.2 and Fig. 8): matches Transformers of the same size
  in language modelling, 5x the Transformer's generation throughput;
- RWKV (Peng et al. 2023, abstract): on par with similarly sized Transformers, linear time in
  training and constant time and memory per token in inference;
- RetNet (Sun et al. 2023, abstract and Fig. 1): parallel training, O(1) inference, lower
  decoding latency than the Transformer at comparable perplexity;
- Zoology (Arora et al. 2023, sec. 3-4): gated convolutions and recurrences lose associative
  recall (MQAR) that attention solves, more as the number of pairs grows.

Works on a partial file (an interrupted study): a claim whose numbers are missing says so.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from attnlab.serialization import atomic_write
from attnlab.studies.compare.lm_archs import REFERENCE

RECURRENT = ("mamba", "rwkv", "retnet", "lstm-lm")
MIB = 2**20
PPL_TOLERANCE = 0.05  # "on par": perplexity within 5% (or within twice the seeds' spread)


# -- reading results.json --------------------------------------------------------------------------

def archs(results: dict[str, Any]) -> list[str]:
    return list(results.get("models", {})) or list(results["settings"]["architectures"])


def label(results: dict[str, Any], arch: str) -> str:
    return results.get("models", {}).get(arch, {}).get("label", arch)


def held_out(results: dict[str, Any], arch: str) -> tuple[str, dict[str, float]] | None:
    """("test" | "valid", the loss spread): the test books' loss where measured."""
    stats = results.get("perplexity", {}).get(arch, {})
    for split in ("test", "valid"):
        if f"{split}_loss" in stats:
            return split, stats[f"{split}_loss"]
    return None


def cost_rows(results: dict[str, Any], arch: str) -> list[dict[str, Any]]:
    records = (results.get("cost") or {}).get("records", [])
    return sorted((r for r in records if r["model"] == arch), key=lambda r: r["length"])


def decode_rows(results: dict[str, Any], arch: str) -> list[dict[str, Any]]:
    return sorted((results.get("decode") or {}).get("rows", {}).get(arch, []),
                  key=lambda r: r["context"])


def probe_accuracy(results: dict[str, Any], probe: str, arch: str) -> dict[str, Any]:
    return results.get("probes", {}).get("accuracy", {}).get(probe, {}).get(arch, {})


def _pm(stats: dict[str, float] | None, fmt: str = "{:.2f}") -> str:
    if not stats:
        return "-"
    text = fmt.format(stats["mean"])
    return text + (f" ± {fmt.format(stats['std'])}" if stats.get("n", 1) > 1 else "")


def _percent(stats: dict[str, float] | None) -> str:
    if not stats:
        return "-"
    return _pm({**stats, "mean": 100 * stats["mean"], "std": 100 * stats["std"]}, "{:.1f}")


# -- tables ----------------------------------------------------------------------------------------

def setup_section(results: dict[str, Any]) -> list[str]:
    s, m, v = results["settings"], results.get("machine", {}), results.get("versions", {})
    budget = (f"{s['max_steps']} optimizer steps" if s.get("max_steps") else
              f"{s['seconds']:g} s of training (validation and testing not counted)")
    lines = ["# After attention: Mamba, RWKV, RetNet and an LSTM against the Transformer", "",
             f"`{results.get('command', '')}`", "",
             f"Machine: {m.get('cpu', '?')}, {m.get('cpu_count', '?')} CPUs, "
             f"{m.get('torch_threads', '?')} torch threads; attnlab {v.get('attnlab', '?')}, "
             f"torch {v.get('torch', '?')}, Python {v.get('python', '?')}.", "",
             f"Corpus `{s['text']}`; {s['tokenizer']} tokenizer of {s['vocab_size']:,} tokens "
             f"shared by every model; windows of {s['block_size']} tokens, batch "
             f"{s['batch_size']}; each run {budget}, AdamW, {s['warmup_steps']} warmup steps "
             f"then the LM task's cosine decay, {s['evaluations']} validations on "
             f"{s['valid_windows']} "
             f"windows, the best one's weights tested; {s['seeds']} seed(s).", "",
             "Equal parameters: every model's width is searched so its non-embedding "
             "parameters (all but the token embedding and the LM head) are within "
             f"{s['tolerance']:.0%} of the Transformer's "
             f"(d={s['d_model']}, {s['n_layers']} layers, {s['n_heads']} heads).", "",
             "| architecture | preset | shape | non-embedding params | gap | peak lr |",
             "|---|---|---|---|---|---|"]
    for info in results.get("models", {}).values():
        shape = ", ".join(f"{k}={v}" for k, v in info["values"].items()
                          if not k.endswith("dropout"))
        lines.append(f"| {info['label']} | `{info['preset']}` | {shape} | "
                     f"{info['non_embedding']:,} | {info['gap']:+.1%} | {info['lr']:g} |")
    lines += ["", "Peak learning rates, and why:", ""]
    lines += [f"- {info['label']}: {info['lr']:g}: {info['lr_reason']}."
              for info in results.get("models", {}).values()]
    return [*lines, ""]


def equal_budget(results: dict[str, Any]) -> str:
    """"equal time", or "equal steps" for a study run with a step limit (--steps)."""
    return "equal steps" if results.get("settings", {}).get("max_steps") else "equal time"


def perplexity_section(results: dict[str, Any]) -> list[str]:
    if not results.get("perplexity"):
        return []
    lines = [f"## Perplexity at equal parameters and {equal_budget(results)}", "",
             "| architecture | valid ppl | test ppl | valid loss | test loss | steps | "
             "training tokens/s |", "|---|---|---|---|---|---|---|"]
    for arch in archs(results):
        p = results["perplexity"].get(arch)
        if not p:
            continue
        lines.append(f"| {label(results, arch)} | {_pm(p.get('valid_perplexity'))} | "
                     f"{_pm(p.get('test_perplexity'))} | {_pm(p.get('valid_loss'), '{:.3f}')} | "
                     f"{_pm(p.get('test_loss'), '{:.3f}')} | {_pm(p.get('steps'), '{:,.0f}')} | "
                     f"{_pm(p.get('train_tokens_per_second'), '{:,.0f}')} |")
    scored = {a: held_out(results, a) for a in archs(results) if held_out(results, a)}
    if REFERENCE in scored and len(scored) > 1:
        split, ref = scored[REFERENCE]
        best = min(scored, key=lambda a: scored[a][1]["mean"])
        lines += ["", f"Lowest {split} perplexity: {label(results, best)}. Against the "
                  "Transformer's: " + ", ".join(
                      f"{label(results, a)} {math.exp(v[1]['mean'] - ref['mean']):.2f}x"
                      for a, v in scored.items() if a != REFERENCE and v[0] == split) + "."]
    return [*lines, ""]


def metric_table(results: dict[str, Any], measured: list[str],
                 rows: Callable[[dict[str, Any], str], list[dict[str, Any]]], axis: str,
                 columns: list[int], heading: str, cell: Callable[[dict[str, Any]], str]
                 ) -> list[str]:
    """One Markdown table of a measured quantity: a row per architecture, a column per value
    of `axis` (length or context); "-" where that architecture has no measurement."""
    head = f"| architecture | {' | '.join(heading.format(n) for n in columns)} |"
    lines = [head, "|---|" + "---|" * len(columns)]
    for arch in measured:
        by = {r[axis]: r for r in rows(results, arch)}
        lines.append(f"| {label(results, arch)} | "
                     + " | ".join(cell(by[n]) if n in by else "-" for n in columns) + " |")
    return lines


def cost_section(results: dict[str, Any]) -> list[str]:
    measured = [a for a in archs(results) if cost_rows(results, a)]
    if not measured:
        return []
    lengths = sorted({r["length"] for a in measured for r in cost_rows(results, a)})

    def table(cell: Callable[[dict[str, Any]], str]) -> list[str]:
        return metric_table(results, measured, cost_rows, "length", lengths, "L={}", cell)

    return ["## Training cost against sequence length", "",
            "Forward + backward of one batch of about "
            f"{results['settings']['tokens_per_batch']:,} tokens (median of the rounds, "
            "architectures timed in turn); peak: the allocator's high-water mark of the step.",
            "", "Tokens/s:", "", *table(lambda r: f"{r['tokens_per_second']:,.0f}"),
            "", "Peak MiB:", "", *table(lambda r: f"{r['peak_mib']:,.1f}"), ""]


def decode_section(results: dict[str, Any]) -> list[str]:
    decode = results.get("decode") or {}
    measured = [a for a in archs(results) if decode_rows(results, a)]
    if not measured:
        return []
    contexts = sorted({r["context"] for a in measured for r in decode_rows(results, a)})

    def table(cell: Callable[[dict[str, Any]], str]) -> list[str]:
        return metric_table(results, measured, decode_rows, "context", contexts, "{:,}", cell)

    lines = ["## Decoding against context length", "",
             "One sequence, the context prefilled with the model's cache, then one token at a "
             "time (median ms per token); the cache's bytes after the context (KV cache: "
             "grows with it; a recurrent state: fixed).", "", "ms per token:", "",
             *table(lambda r: f"{r['ms_per_token']:.2f}"), "", "Cache KiB:", "",
             *table(lambda r: f"{r['cache_bytes'] / 1024:,.1f}"), ""]
    for arch, context in (decode.get("crossover") or {}).items():
        lines.append(f"- Crossover, {label(results, arch)}: " + (
            f"first faster per token than the KV-cached Transformer at a context of "
            f"{context:,} tokens" if context is not None else
            f"never faster per token than the KV-cached Transformer up to {contexts[-1]:,} "
            "tokens"))
    return [*lines, ""]


def probes_section(results: dict[str, Any]) -> list[str]:
    accuracy = results.get("probes", {}).get("accuracy", {})
    if not accuracy:
        return []
    from attnlab.studies.compare.lm_probes import SIZE_NAMES

    s = results["settings"]
    budget = (f"{s['probe_steps']} steps" if s.get("probe_steps") else
              f"{s['probe_seconds']:g} s")
    lines = ["## Probes", "",
             f"Each architecture trained {budget} per probe at a smaller matched size "
             f"(Transformer d={s['probe_d_model']}, {s['probe_n_layers']} layers), then "
             "scored teacher-forced on held-out examples: accuracy (%) on the answer tokens.",
             ""]
    for probe, by_arch in accuracy.items():
        present = [a for a in archs(results) if a in by_arch]
        sizes = sorted({int(k) for a in present for k in by_arch[a]})
        lines += [f"### {probe}: accuracy against {SIZE_NAMES.get(probe, 'size')}", "",
                  "| architecture | " + " | ".join(map(str, sizes)) + " |",
                  "|---|" + "---|" * len(sizes)]
        for arch in present:
            lines.append(f"| {label(results, arch)} | " + " | ".join(
                _percent(by_arch[arch].get(str(n))) for n in sizes) + " |")
        lines.append("")
    return lines


def runs_section(results: dict[str, Any]) -> list[str]:
    if not results.get("runs"):
        return []
    lines = ["## Every run", "",
             "| run | valid loss | test loss | steps | epochs | tokens/s | params |",
             "|---|---|---|---|---|---|---|"]
    for key, r in results["runs"].items():
        test = f"{r['test_loss']:.3f}" if "test_loss" in r else "-"
        lines.append(f"| {key} | {r['valid_loss']:.3f} | {test} | {r['steps']:,} | "
                     f"{r.get('epochs', '-')} | {r['train_tokens_per_second']:,} | "
                     f"{r['params']:,} |")
    return [*lines, ""]


# -- the papers' claims against the measurement ----------------------------------------------------

def perplexity_claim(results: dict[str, Any], arch: str, claim: str) -> str:
    mine, ref = held_out(results, arch), held_out(results, REFERENCE)
    if not mine or not ref or mine[0] != ref[0]:
        return f"{claim}: not measured yet."
    split, a = mine
    b = ref[1]
    ratio = math.exp(a["mean"] - b["mean"])
    noise = 2 * max(a.get("std", 0.0), b.get("std", 0.0))
    on_par = abs(ratio - 1) <= PPL_TOLERANCE or abs(a["mean"] - b["mean"]) <= noise
    said = (f"{label(results, arch)}'s {split} perplexity is {ratio:.2f}x the "
            f"Transformer's ({math.exp(a['mean']):.1f} vs {math.exp(b['mean']):.1f})")
    if on_par:
        return f"{claim}: **agrees**: {said}, within {PPL_TOLERANCE:.0%} or the seeds' noise."
    if ratio < 1:
        return f"{claim}: **agrees** (better): {said}."
    return f"{claim}: **disagrees**: {said}; see the caveats on budget and scale."


def speedup(results: dict[str, Any], arch: str) -> tuple[int, float] | None:
    """(the longest context both decoded, Transformer ms/token / arch ms/token)."""
    ref = {r["context"]: r for r in decode_rows(results, REFERENCE)}
    mine = {r["context"]: r for r in decode_rows(results, arch)}
    common = sorted(set(ref) & set(mine))
    if not common:
        return None
    n = common[-1]
    return n, ref[n]["ms_per_token"] / mine[n]["ms_per_token"]


def flat(rows: list[dict[str, Any]], key: str, ratio: float) -> bool | None:
    """Whether rows' `key` at the longest point stays within `ratio` x the shortest's."""
    if len(rows) < 2:
        return None
    first, last = rows[0][key], rows[-1][key]
    return last <= ratio * first if key != "tokens_per_second" else last >= first / ratio


def claims(results: dict[str, Any]) -> list[str]:
    present = set(archs(results))
    lines = ["## What the papers claim vs what we measured", ""]
    if "mamba" in present:
        lines.append("- " + perplexity_claim(
            results, "mamba", "Mamba matches Transformers of the same size in language "
                              "modelling (Gu & Dao 2023, sec. 4.2)"))
        fast = speedup(results, "mamba")
        claim = "Mamba generates with 5x the Transformer's throughput (Fig. 8)"
        if fast is None:
            lines.append(f"- {claim}: not measured yet.")
        else:
            n, x = fast
            verdict = ("**agrees**" if x >= 5 else "**partly agrees** (faster, not 5x)"
                       if x > 1 else "**disagrees**")
            lines.append(f"- {claim}: {verdict}: {x:.2f}x per token at a context of {n:,} "
                         "(batch 1 here; the paper's 5x is tokens/s at large batches on an "
                         "A100, where the KV cache limits the Transformer's batch).")
    if "rwkv" in present:
        lines.append("- " + perplexity_claim(
            results, "rwkv", "RWKV performs on par with similarly sized Transformers "
                             "(Peng et al. 2023)"))
        train = flat(cost_rows(results, "rwkv"), "tokens_per_second", 1.5)
        ms = flat(decode_rows(results, "rwkv"), "ms_per_token", 1.5)
        claim = "RWKV is linear in time: flat cost per token in training and in decoding"
        if train is None and ms is None:
            lines.append(f"- {claim}: not measured yet.")
        else:
            ok = all(v for v in (train, ms) if v is not None)
            trained = _trend(cost_rows(results, "rwkv"), "tokens_per_second", "length",
                             "{:,.0f}")
            decoded = _trend(decode_rows(results, "rwkv"), "ms_per_token", "context", "{:.2f}")
            lines.append(f"- {claim}: **{'agrees' if ok else 'disagrees'}** (within 1.5x "
                         f"counts as flat): training tokens/s {trained}; ms per token "
                         f"{decoded}.")
    if "retnet" in present:
        lines.append("- " + perplexity_claim(
            results, "retnet", "RetNet reaches Transformer-level perplexity (Sun et al. 2023)"))
        mine, ref = cost_rows(results, "retnet"), {r["length"]: r for r in
                                                   cost_rows(results, REFERENCE)}
        claim = "RetNet trains in parallel (training speed of the Transformer's order)"
        pairs = [(r["tokens_per_second"] / ref[r["length"]]["tokens_per_second"], r["length"])
                 for r in mine if r["length"] in ref]
        if not pairs:
            lines.append(f"- {claim}: not measured yet.")
        else:
            worst, n = min(pairs)
            lines.append(f"- {claim}: **{'agrees' if worst >= 0.5 else 'disagrees'}**: at "
                         f"worst {worst:.2f}x the Transformer's training tokens/s (L={n}).")
        rows = decode_rows(results, "retnet")
        claim = "RetNet's inference is O(1): a fixed state and lower latency than the Transformer"
        fast = speedup(results, "retnet")
        if not rows or fast is None:
            lines.append(f"- {claim}: not measured yet.")
        else:
            fixed = len({r["cache_bytes"] for r in rows}) == 1
            n, x = fast
            verdict = ("agrees" if fixed and x > 1 else "partly agrees" if fixed
                       else "disagrees")
            lines.append(f"- {claim}: **{verdict}**: cache "
                         f"{'fixed at' if fixed else 'grows to'} "
                         f"{rows[-1]['cache_bytes'] / 1024:,.1f} KiB; {x:.2f}x the "
                         f"Transformer's decoding speed at a context of {n:,}.")
    lines += zoology(results, present)
    return [*lines, ""]


def _trend(rows: list[dict[str, Any]], key: str, axis: str, fmt: str) -> str:
    if len(rows) < 2:
        return "not measured"
    a, b = rows[0], rows[-1]
    return (f"{fmt.format(a[key])} at {axis} {a[axis]:,} -> {fmt.format(b[key])} at "
            f"{b[axis]:,} ({b[key] / a[key]:.2f}x)")


def unlearned(results: dict[str, Any], probe: str) -> str:
    """A warning when the Transformer itself stayed under 50% at the probe's smallest size:
    then no architecture learned the task in the budget and a verdict says little."""
    ref = probe_accuracy(results, probe, REFERENCE)
    if not ref:
        return ""
    smallest = min(ref, key=int)
    if ref[smallest]["mean"] >= 0.5:
        return ""
    return (f" The Transformer itself reached only {ref[smallest]['mean']:.0%} at size "
            f"{smallest}: the budget was too short to learn the task, so this says little "
            "(raise --probe-seconds).")


def zoology(results: dict[str, Any], present: set[str]) -> list[str]:
    claim = ("Gated convolutions and recurrences lose associative recall that attention "
             "solves (Arora et al. 2023, MQAR)")
    ref = probe_accuracy(results, "mqar", REFERENCE)
    gated = [a for a in RECURRENT if a in present and probe_accuracy(results, "mqar", a)]
    lines = []
    if not ref or not gated:
        lines.append(f"- {claim}: not measured yet.")
    else:
        largest = max(ref, key=int)
        gaps = {a: (ref[largest]["mean"] - probe_accuracy(results, "mqar", a).get(
            largest, {"mean": math.nan})["mean"]) * 100 for a in gated}
        behind = [a for a, g in gaps.items() if g > 10]
        said = ", ".join(f"{label(results, a)} {g:+.1f}" for a, g in gaps.items())
        verdict = ("agrees" if len(behind) == len(gated) else "partly agrees" if behind
                   else "disagrees")
        lines.append(f"- {claim}: **{verdict}**: at {largest} key-value pairs the "
                     f"Transformer's MQAR accuracy is {ref[largest]['mean']:.0%}; it leads by "
                     f"(points) {said} (a lead of over 10 points counts as a loss of recall)."
                     + unlearned(results, "mqar"))
    mamba = probe_accuracy(results, "selective", "mamba")
    if "mamba" in present:
        claim = ("Mamba solves selective copying, which time-invariant recurrences cannot "
                 "(Gu & Dao 2023, sec. 4.1, Table 1)")
        if not mamba:
            lines.append(f"- {claim}: not measured yet.")
        else:
            longest = max(mamba, key=int)
            accuracy = mamba[longest]["mean"]
            lines.append(f"- {claim}: **{'agrees' if accuracy >= 0.9 else 'disagrees'}** "
                         f"(90% or more counts as solved): {accuracy:.0%} over {longest} "
                         "positions of noise." + unlearned(results, "selective"))
    return lines


def caveats(results: dict[str, Any]) -> list[str]:
    s = results["settings"]
    lines = ["## Why ours may differ from the papers", "",
             "- Scale: models of about "
             f"{results['models'][REFERENCE]['non_embedding'] / 1e6:.2f}M non-embedding "
             "parameters trained for minutes on a CPU; the papers train 100M-14B parameter "
             "models on billions of tokens on GPUs.",
             "- Equal steps (the same tokens for every model), not equal time: this says "
             "what each architecture learns from the same data, not what this machine's time "
             "buys." if s.get("max_steps") else
             "- Equal time, not equal tokens or FLOPs: each model gets the steps its speed on "
             "this machine buys; a slow recurrent scan on CPU (no fused kernels) costs steps a "
             "GPU kernel would not."]
    steps = {a: p["steps"]["mean"] for a, p in results.get("perplexity", {}).items()
             if "steps" in p}
    if steps and not s.get("max_steps"):
        lines.append("- Steps taken in the budget (mean over seeds): " + ", ".join(
            f"{label(results, a)} {n:,.0f}" for a, n in steps.items()) + ".")
        slow = [a for a in steps if REFERENCE in steps and steps[a] < steps[REFERENCE] / 3]
        if slow:
            lines.append("- " + ", ".join(
                f"{label(results, a)} took {steps[REFERENCE] / steps[a]:.0f}x fewer steps"
                for a in slow) + " than the Transformer in the same time: at equal time its "
                "perplexity measures its speed on this machine as much as its architecture "
                "(--steps N compares at equal steps instead).")
    lines += ["- One recipe per architecture from the papers' practice, not tuned here; "
              "a different learning rate may reorder close results.",
              "- Decoding at batch 1 with small models: the cost per token is dominated by "
              "per-layer overheads until the KV cache is large; the papers' speedups are at "
              "large batches and long contexts on GPUs.", ""]
    if s.get("seeds", 1) == 1:
        lines.insert(-1, "- One seed: differences of a few percent may be noise; run more "
                         "seeds (--seeds) before quoting them.")
    return lines


def markdown(results: dict[str, Any]) -> str:
    return "\n".join([*setup_section(results), *perplexity_section(results),
                      *cost_section(results), *decode_section(results),
                      *probes_section(results), *claims(results), *caveats(results),
                      *runs_section(results)])


# -- plots -----------------------------------------------------------------------------------------

def write_report(results: dict[str, Any], out: Path) -> Path:
    """results.md (the plots: lm_plots.write_plots)."""
    text = markdown(results) + "\n"
    atomic_write(out / "results.md", lambda t: Path(t).write_text(text, encoding="utf-8"))
    return out / "results.md"
