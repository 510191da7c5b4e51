"""Attention backends side by side: time and peak memory of math vs sdpa (plus matmul for bf16/fp16 on CPU, xformers
on CUDA) in one run.

    python benchmarks/attention.py [--lengths 256 1024 4096] [--heads 8] [--dim 64] [--batch 1]
                                   [--dtype fp32|bf16] [--backward] [--device cpu|cuda] [--budget 3]

How it measures (per sequence length L, self-attention q, k, v of shape [batch, heads, L, dim], no mask):

* **time**: one warm-up call each, then the median wall time of ``repeats`` calls, the backends called in turn so
  a change in machine load hits all of them alike; ``repeats`` adapts so each backend gets about ``--budget``
  seconds (between 3 and 50). CUDA calls are synchronised. ``--backward`` times forward+backward.
* **peak memory**: the extra memory one call needs above what was live before it (inputs are not counted).
  CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``, minus ``memory_allocated`` before.
  CPU: no allocator counts CPU tensors (``tracemalloc`` does not see them), so this reads the kernel's resident-set
  high-water mark: return free heap pages to the OS (glibc ``malloc_trim``, so memory the call reuses must be
  faulted in again and counts), reset ``VmHWM`` (write ``5`` to ``/proc/self/clear_refs``), run one call, report
  ``VmHWM - VmRSS(before)``. This is the real allocator's behaviour in one process, case after case; resolution is
  a page, so values under ~1 MiB are noise. Linux/glibc only; elsewhere it prints n/a.
* **speedup** = math time / backend time (> 1: faster than math); **memory** = backend peak / math peak;
  **max |diff|** = largest elementwise difference of the backend's output from the math output.
"""

from __future__ import annotations

import argparse
import ctypes
import statistics
import time
from collections.abc import Callable

import torch

from mmgen.nn.attention import attention, available_backends

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[256, 1024, 4096], help="sequence lengths")
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--dim", type=int, default=64, help="head dim")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    parser.add_argument("--backward", action="store_true", help="time forward+backward instead of forward")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    parser.add_argument("--budget", type=float, default=3.0, help="seconds of timed repeats per case")
    return parser.parse_args(argv)


def trim_heap() -> bool:
    """Hand glibc's free heap pages back to the OS (``malloc_trim``), so reusing them shows up in RSS again."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        return True
    except (OSError, AttributeError):
        return False


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))


def peak_mib(fn: Callable[[], object], device: str) -> float | None:
    """Extra memory (MiB) that one call of ``fn`` needs above what is live before it; None when unmeasurable."""
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - before) / 2**20
    try:
        trim_heap()
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")  # reset the resident-set high-water mark (VmHWM) to the current RSS
        before = _status_kib("VmRSS")
        fn()
        return max(0, _status_kib("VmHWM") - before) / 1024
    except OSError:
        return None


def time_interleaved(steps: dict[str, Callable[[], None]], device: str, budget: float) -> tuple[dict[str, float], int]:
    """Median milliseconds per call of each step, timed in alternation (so load changes hit all alike).

    Two warm-up rounds (the second sizes the run), then ``repeats`` rounds filling about ``budget`` s (3..50).
    """

    def once(fn: Callable[[], None]) -> float:
        start = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    for fn in steps.values():
        once(fn)  # first calls pay one-off costs (kernel selection, autograd setup)
    round_s = sum(once(fn) for fn in steps.values())
    repeats = max(3, min(50, int(budget / max(round_s, 1e-6))))
    samples: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, fn in steps.items():
            samples[name].append(once(fn))
    return {name: statistics.median(times) * 1000 for name, times in samples.items()}, repeats


def make_case(args: argparse.Namespace, length: int) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Random ``q, k, v`` ``[batch, heads, length, dim]`` (requiring grad with --backward) and an output grad."""
    gen = torch.Generator(device=args.device).manual_seed(0)
    shape = (args.batch, args.heads, length, args.dim)
    opts = {"generator": gen, "device": args.device, "dtype": DTYPES[args.dtype]}
    qkv = [torch.randn(shape, **opts).requires_grad_(args.backward) for _ in range(3)]
    return qkv, torch.randn(shape, **opts)


def make_step(qkv: list[torch.Tensor], grad: torch.Tensor, backend: str, backward: bool) -> Callable[[], None]:
    """One forward (or forward+backward) call of ``backend``; grads are dropped after each call."""

    def step() -> None:
        with torch.set_grad_enabled(backward):
            out = attention(*qkv, backend=backend)
            if backward:
                out.backward(grad)
                for t in qkv:
                    t.grad = None

    return step


def run_length(args: argparse.Namespace, length: int, backends: list[str]) -> list[dict]:
    """Time every backend at one sequence length and compare its output with math's (the reference)."""
    qkv, grad = make_case(args, length)
    steps = {backend: make_step(qkv, grad, backend, args.backward) for backend in backends}
    timings, repeats = time_interleaved(steps, args.device, args.budget * len(steps))
    with torch.no_grad():
        outputs = {backend: attention(*qkv, backend=backend).float() for backend in backends}
    return [
        {"L": length, "backend": b, "ms": timings[b], "repeats": repeats, "mib": None,
         "diff": (outputs[b] - outputs["math"]).abs().max().item()}
        for b in backends
    ]  # fmt: skip


def measure_memory(args: argparse.Namespace, rows: list[dict]) -> None:
    """Fill each row's peak MiB from one more call per case (timing first, on a quiet allocator)."""
    if args.device == "cpu" and not trim_heap():
        print("note: no glibc malloc_trim here; CPU peak memory may under-count reused heap memory\n")
    for length in dict.fromkeys(row["L"] for row in rows):
        qkv, grad = make_case(args, length)
        for row in (r for r in rows if r["L"] == length):
            row["mib"] = peak_mib(make_step(qkv, grad, row["backend"], args.backward), args.device)
        del qkv, grad


def _ratio(value: float | None, base: float | None) -> str:
    return f"{value / base:.2f}x" if value is not None and base else "n/a"


def print_table(rows: list[dict]) -> None:
    head = f"{'L':>6}  {'backend':<9} {'time ms':>10} {'reps':>5} {'peak MiB':>9} {'speedup':>8} {'memory':>7}"
    print(head + f" {'max |diff|':>10}")
    print("-" * (len(head) + 11))
    for row in rows:
        base = next(r for r in rows if r["L"] == row["L"] and r["backend"] == "math")
        mib = "n/a" if row["mib"] is None else f"{row['mib']:.1f}"
        speed, memory = _ratio(base["ms"], row["ms"]), _ratio(row["mib"], base["mib"])
        print(
            f"{row['L']:>6}  {row['backend']:<9} {row['ms']:>10.2f} {row['repeats']:>5} {mib:>9} {speed:>8}"
            f" {memory:>7} {row['diff']:>10.1e}"
        )
    print("\nsdpa/math speed ratio (math time / sdpa time): ", end="")
    for length in dict.fromkeys(r["L"] for r in rows):
        base, sdpa = (next(r for r in rows if r["L"] == length and r["backend"] == b) for b in ("math", "sdpa"))
        print(f"L={length}: {base['ms'] / sdpa['ms']:.2f}x", end="  ")
    print()
    if any(r["backend"] == "matmul" for r in rows):
        print("matmul/sdpa speed ratio (sdpa time / matmul time): ", end="")
        for length in dict.fromkeys(r["L"] for r in rows):
            sdpa, matmul = (next(r for r in rows if r["L"] == length and r["backend"] == b) for b in ("sdpa", "matmul"))
            print(f"L={length}: {sdpa['ms'] / matmul['ms']:.2f}x", end="  ")
        print()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    backends = ["math", "sdpa"]
    if args.device == "cpu" and args.dtype != "fp32":
        backends.append("matmul")
    if args.device == "cuda" and args.dtype != "fp32" and "xformers" in available_backends():
        backends.append("xformers")
    mode = "forward+backward" if args.backward else "forward"
    print(
        f"attention on {args.device} ({torch.get_num_threads()} threads), {args.dtype}, {mode}: batch {args.batch},"
        f" {args.heads} heads, head dim {args.dim}; torch {torch.__version__}\n"
    )
    rows = [row for length in args.lengths for row in run_length(args, length, backends)]
    measure_memory(args, rows)
    print_table(rows)


if __name__ == "__main__":
    main()
