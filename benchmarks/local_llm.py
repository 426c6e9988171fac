"""The offline default generator measured: load time, memory, prefill and decode speed, log-prob overhead.

Run: ``python benchmarks/local_llm.py [--max-new-tokens 48] [--repeats 3] [--model-path P] [--device cpu]``.

Prints, for SmolLM2-135M-Instruct (Q4_1 GGUF dequantised to float32 by transformers) or the given model:
import time of ``rag_routing.llms`` (must stay light) and of torch + transformers, load time, resident memory
(after loading and peak), then per run — a short RAG prompt — time to first streamed token, prefill and decode
tokens/s, with and without log-probabilities, and the same greedy answer through ``model.generate`` for
comparison. Every time is given as wall clock and as this process's CPU time: on a shared machine the CPU
figure is the honest one (wall time includes waiting for cores other jobs hold).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

PROMPTS = [
    [{"role": "system", "content": "Use this context to answer: The capital of Freedonia is Zorbatown."},
     {"role": "user", "content": "What is the capital of Freedonia?"}],
    [{"role": "system", "content": "Use this context to answer: Marie Curie won the Nobel Prize in Physics in "
                                   "1903 and the Nobel Prize in Chemistry in 1911."},
     {"role": "user", "content": "In which year did Marie Curie win the Nobel Prize in Chemistry?"}],
    [{"role": "user", "content": "Explain in two sentences why retrieval helps a small language model answer "
                                 "questions about recent events."}],
]


def rss_mb() -> tuple[float, float]:
    """(current, peak) resident memory of this process in MB, from /proc (Linux)."""
    values = {}
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    key, amount = line.split(":")
                    values[key] = int(amount.split()[0]) / 1024
    except OSError:
        return float("nan"), float("nan")
    return values.get("VmRSS", float("nan")), values.get("VmHWM", float("nan"))


class Clock:
    """Wall and CPU seconds of a block."""

    def __enter__(self) -> Clock:
        self.wall0, self.cpu0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall0, time.process_time() - self.cpu0


def measure_run(llm, prompt, max_new_tokens: int, logprobs: bool) -> dict:
    with Clock() as total:
        stream = llm.stream_chunks(prompt, max_new_tokens=max_new_tokens, logprobs=logprobs)
        first_wall = first_cpu = None
        final = None
        for chunk in stream:
            if first_wall is None:
                first_wall, first_cpu = time.perf_counter() - total.wall0, time.process_time() - total.cpu0
            final = chunk.final or final
    decode_tokens = max(final.output_tokens - 1, 1)  # the first token comes with the prefill
    return {
        "input_tokens": final.input_tokens, "output_tokens": final.output_tokens, "text": final.text,
        "ttft_wall": first_wall, "ttft_cpu": first_cpu, "wall": total.wall, "cpu": total.cpu,
        "decode_tps_wall": decode_tokens / max(total.wall - first_wall, 1e-9),
        "decode_tps_cpu": decode_tokens / max(total.cpu - first_cpu, 1e-9),
        "token_ids": final.token_ids,
    }


def measure_hf_generate(llm, prompt, max_new_tokens: int) -> dict:
    import torch

    loaded = llm.loaded
    ids = loaded.tokenizer(llm.format_prompt(prompt), add_special_tokens=False, return_tensors="pt").to(loaded.device)
    with Clock() as clock, torch.inference_mode():
        out = loaded.model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False, output_logits=True,
                                    return_dict_in_generate=True, pad_token_id=loaded.tokenizer.eos_token_id)
    new = out.sequences[0, ids["input_ids"].shape[1]:].tolist()
    return {"output_tokens": len(new), "wall": clock.wall, "cpu": clock.cpu,
            "tps_wall": len(new) / clock.wall, "tps_cpu": len(new) / max(clock.cpu, 1e-9),
            "token_ids": [t for t in new if t not in loaded.eos_token_ids]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=3, help="runs per prompt (the best is reported)")
    parser.add_argument("--model-path", default=None, help="hub id, folder or .gguf (default: SmolLM2 GGUF)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-hf", action="store_true", help="skip the model.generate comparison")
    parser.add_argument("--json", action="store_true", help="also print the figures as one JSON line")
    args = parser.parse_args()
    report: dict = {}

    with Clock() as clock:
        import rag_routing.llms as llms
    report["import_rag_routing_llms_s"] = clock.wall
    report["torch_imported_by_it"] = "torch" in sys.modules
    rss0, _ = rss_mb()
    with Clock() as clock:
        import torch
        import transformers  # noqa: F401
    report["import_torch_transformers_s"] = clock.wall
    report["torch_threads"] = torch.get_num_threads()

    llm = llms.LocalLLM(args.model_path, device=args.device)
    with Clock() as clock:
        llm.load()
    report.update(model=llm.model_name, params_million=round(llm.loaded.num_parameters / 1e6, 1),
                  load_wall_s=clock.wall, load_cpu_s=clock.cpu)
    rss1, peak1 = rss_mb()
    report.update(rss_before_load_mb=rss0, rss_after_load_mb=rss1, peak_rss_after_load_mb=peak1)

    runs = []
    for prompt in PROMPTS:
        best = {}
        for logprobs in (True, False):
            trials = [measure_run(llm, prompt, args.max_new_tokens, logprobs) for _ in range(args.repeats)]
            best[logprobs] = max(trials, key=lambda r: r["decode_tps_cpu"])
        row = {"input_tokens": best[True]["input_tokens"], "output_tokens": best[True]["output_tokens"],
               "answer": best[True]["text"][:60],
               **{f"{k}": best[True][k] for k in ("ttft_wall", "ttft_cpu", "decode_tps_wall", "decode_tps_cpu")},
               "no_logprobs_decode_tps_cpu": best[False]["decode_tps_cpu"]}
        if not args.no_hf:
            hf = max((measure_hf_generate(llm, prompt, args.max_new_tokens) for _ in range(args.repeats)),
                     key=lambda r: r["tps_cpu"])
            row.update(hf_generate_tps_wall=hf["tps_wall"], hf_generate_tps_cpu=hf["tps_cpu"],
                       same_tokens_as_hf=hf["token_ids"] == best[True]["token_ids"])
        runs.append(row)
    report["runs"] = runs
    report["peak_rss_mb"] = rss_mb()[1]
    print_report(report)
    if args.json:
        print(json.dumps(report))


def print_report(report: dict) -> None:
    print(f"model: {report['model']} ({report['params_million']}M parameters), torch threads: "
          f"{report['torch_threads']}, load avg: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"import rag_routing.llms: {report['import_rag_routing_llms_s'] * 1e3:.0f} ms "
          f"(torch imported: {report['torch_imported_by_it']}); import torch + transformers: "
          f"{report['import_torch_transformers_s']:.1f} s")
    print(f"load: {report['load_wall_s']:.1f} s wall, {report['load_cpu_s']:.1f} s CPU; resident memory "
          f"{report['rss_before_load_mb']:.0f} -> {report['rss_after_load_mb']:.0f} MB, peak "
          f"{report['peak_rss_mb']:.0f} MB")
    header = (f"{'in':>4} {'out':>4} {'TTFT wall/CPU s':>16} {'decode tok/s wall/CPU':>22} "
              f"{'no-logprobs CPU':>16} {'generate() wall/CPU':>20} {'same':>5}  answer")
    print(header)
    for r in report["runs"]:
        hf = (f"{r['hf_generate_tps_wall']:8.1f} /{r['hf_generate_tps_cpu']:6.1f}" if "hf_generate_tps_cpu" in r
              else f"{'-':>20}")
        print(f"{r['input_tokens']:>4} {r['output_tokens']:>4} {r['ttft_wall']:>8.2f} /{r['ttft_cpu']:6.2f} "
              f"{r['decode_tps_wall']:>13.1f} /{r['decode_tps_cpu']:6.1f} {r['no_logprobs_decode_tps_cpu']:>16.1f} "
              f"{hf:>20} {str(r.get('same_tokens_as_hf', '-')):>5}  {r['answer']!r}")
    mean_cpu = statistics.mean(r["decode_tps_cpu"] for r in report["runs"])
    mean_wall = statistics.mean(r["decode_tps_wall"] for r in report["runs"])
    print(f"mean decode speed: {mean_wall:.1f} tokens/s wall, {mean_cpu:.1f} tokens per CPU-second "
          f"(torch uses {report['torch_threads']} threads: an idle machine gives up to "
          f"{mean_cpu * report['torch_threads']:.0f} tokens/s wall)")


if __name__ == "__main__":
    main()
