"""Pairwise Poincare distance, forward+backward: the fused compiled op vs two baselines.

Workload (full run): ``x: (2048, D)``, ``y: (2048, D)`` float32 points of the unit ball (norms
uniform in [0, 0.9]), D = 16 and 64, one forward to the ``(2048, 2048)`` distances and one
backward with a fixed upstream gradient, at 1 and 2 threads. Measured in the same run:

* ``geolayers``: :func:`geolayers.ops.poincare_pairwise_dist` (one pass over the output, no
  ``(N, M, D)`` intermediate, forward or backward);
* ``geoopt``: ``geoopt.PoincareBall().dist`` broadcast over ``(N, 1, D)`` and ``(1, M, D)``, as
  users write it (it builds the ``(N, M, D)`` tensors of the Mobius addition);
* ``matmul``: :func:`matmul_pairwise_dist`, the pure-PyTorch form through a matrix product,
  ``|x|^2 + |y|^2 - 2 x.y``, fast but imprecise for nearby points near the boundary.

Speed: median of repeats. Memory: peak resident memory added by one forward+backward (after
one untimed call), measured in a fresh subprocess per implementation with glibc returning
freed buffers to the system (``/proc/self/clear_refs`` resets the peak, ``VmHWM`` reads it).
Precision: the largest relative error against 50-digit mpmath on pairs of nearby points
(``y = x (1 - 10 eps)``) at the norm ``1 - 1e-3`` (float32) and ``1 - 1e-5`` (float64), and on
random pairs; the issue's test is ``< 1e-4`` (float32) and ``< 1e-9`` (float64).

Run: ``python -m benchmarks.hyperbolic_ops [--smoke] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import geoopt
import mpmath
import torch
from torch import Tensor

from benchmarks._harness import Row, machine_line, markdown_table, median_time, write_json
from geolayers.ops import backend, poincare_pairwise_dist

NAMES = ("geolayers", "geoopt", "matmul")
EDGE = {torch.float32: 1e-3, torch.float64: 1e-5}
TOL = {torch.float32: 1e-4, torch.float64: 1e-9}


def matmul_pairwise_dist(x: Tensor, y: Tensor, c: float = 1.0) -> Tensor:
    r"""The matrix-product form ``(N, D) x (M, D) -> (N, M)``: :math:`\operatorname{arcosh}(1 +
    2c\,s / ((1 - c|x|^2)(1 - c|y|^2))) / \sqrt c` with :math:`s = |x|^2 + |y|^2 - 2 x\cdot y`.

    The baseline a user writes for speed; ``s`` cancels when ``x`` and ``y`` are close.
    """
    xx = x.square().sum(-1, keepdim=True)
    yy = y.square().sum(-1)
    sq = (xx + yy - 2 * x @ y.T).clamp_min(1e-30)
    return torch.acosh(1 + 2 * c * sq / ((1 - c * xx) * (1 - c * yy))) / c**0.5


def implementations():
    ball = geoopt.PoincareBall(c=1.0)
    return {
        "geolayers": lambda x, y: poincare_pairwise_dist(x, y),
        "geoopt": lambda x, y: ball.dist(x[:, None, :], y[None, :, :]),
        "matmul": matmul_pairwise_dist,
    }


def random_points(n: int, d: int, gen: torch.Generator, dtype=torch.float32) -> Tensor:
    u = torch.randn(n, d, generator=gen, dtype=torch.float64)
    r = 0.9 * torch.rand(n, 1, generator=gen, dtype=torch.float64)
    return (u / u.norm(dim=-1, keepdim=True) * r).to(dtype)


def inputs(n: int, d: int):
    gen = torch.Generator().manual_seed(d)
    x = random_points(n, d, gen).requires_grad_()
    y = random_points(n, d, gen).requires_grad_()
    grad = torch.randn(n, n, generator=gen)
    return x, y, grad


def peak_memory_child(name: str, n: int, d: int) -> None:
    """Runs in a subprocess: prints the resident memory one forward+backward adds, in bytes."""
    torch.set_num_threads(1)
    x, y, grad = inputs(n, d)
    fn = implementations()[name]
    # A first full call outside the measurement: the code pages it touches count as resident
    # memory too. Its buffers go back to the system when freed (see peak_memory's malloc
    # setting), so the second call has to map its own.
    fn(x, y).backward(grad)
    x.grad = y.grad = None

    def status(key: str) -> int:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key):
                    return int(line.split()[1]) * 1024
        raise RuntimeError(f"{key} not in /proc/self/status")

    before = status("VmRSS:")
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # reset VmHWM to the current RSS
    fn(x, y).backward(grad)
    print(status("VmHWM:") - before)


def peak_memory(name: str, n: int, d: int) -> int | None:
    if not os.path.exists("/proc/self/clear_refs"):
        return None  # not Linux: no per-process peak reset
    cmd = [sys.executable, "-m", "benchmarks.hyperbolic_ops", "--memory-of", name]
    cmd += ["--n", str(n), "--dim", str(d)]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    # Every allocation of 64 KiB and more is its own mapping, unmapped when freed: glibc would
    # otherwise keep freed buffers resident for reuse and hide the second call's peak.
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=root, env=env)
    return int(out.stdout.split()[-1])


def precision(n_pairs: int) -> list[list[object]]:
    """Largest relative error of each implementation against mpmath, per dtype and point set."""
    mpmath.mp.dps = 50
    impls = implementations()
    rows = []
    for dtype in (torch.float32, torch.float64):
        gen = torch.Generator().manual_seed(7)
        u = torch.randn(n_pairs, 8, generator=gen, dtype=torch.float64)
        x_edge = u / u.norm(dim=-1, keepdim=True) * (1 - EDGE[dtype])
        sets = {
            "nearby, near the boundary": (x_edge, x_edge * (1 - 10 * torch.finfo(dtype).eps)),
            "random (norms <= 0.9)": (
                random_points(n_pairs, 8, gen, torch.float64),
                random_points(n_pairs, 8, gen, torch.float64),
            ),
        }
        for label, (x64, y64) in sets.items():
            x, y = x64.to(dtype), y64.to(dtype)
            ref = []
            for a, b in zip(x.double().tolist(), y.double().tolist(), strict=True):
                a, b = [mpmath.mpf(v) for v in a], [mpmath.mpf(v) for v in b]
                diff = mpmath.fsum((p - q) ** 2 for p, q in zip(a, b, strict=True))
                na, nb = mpmath.fsum(p * p for p in a), mpmath.fsum(q * q for q in b)
                ref.append(mpmath.acosh(1 + 2 * diff / ((1 - na) * (1 - nb))))
            row = [str(dtype).replace("torch.", ""), label]
            for name in NAMES:
                with torch.no_grad():
                    got = impls[name](x, y).diagonal().double().tolist()
                err = max(float(abs(mpmath.mpf(g) - r) / r) for g, r in zip(got, ref, strict=True))
                mark = "pass" if err < TOL[dtype] else "FAIL"
                row.append(f"{err:.1e} ({mark})")
            rows.append(row)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, a few seconds")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per entry")
    parser.add_argument("--memory-of", choices=NAMES, help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, default=2048, help=argparse.SUPPRESS)
    parser.add_argument("--dim", type=int, default=16, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_of:
        peak_memory_child(args.memory_of, args.n, args.dim)
        return 0

    n, dims = (256, (16,)) if args.smoke else (2048, (16, 64))
    repeats = args.repeats or (1 if args.smoke else 5)
    impls = implementations()

    # Agreement on these well-inside points before timing: all three compute the same distances.
    for d in dims:
        x, y, _ = inputs(n, d)
        with torch.no_grad():
            ours = impls["geolayers"](x, y)
            for name in NAMES[1:]:
                if not torch.allclose(impls[name](x, y), ours, rtol=1e-3, atol=1e-3):
                    raise SystemExit(f"{name} disagrees with the compiled op at D = {d}")

    rows: list[Row] = []
    default_threads = torch.get_num_threads()
    for d in dims:
        x, y, grad = inputs(n, d)
        memory = {name: peak_memory(name, n, d) for name in NAMES}
        for threads in (1, 2):
            torch.set_num_threads(threads)
            row = Row(config={"D": d, "threads": threads}, extra={"peak_bytes": memory})
            for name in NAMES:

                def step(fn=impls[name], x=x, y=y, grad=grad):
                    x.grad = y.grad = None
                    fn(x, y).backward(grad)

                # geoopt takes seconds per call at D = 64: fewer repeats, same median rule.
                reps = max(1, repeats // 2) if name == "geoopt" and not args.smoke else repeats
                row.seconds[name] = median_time(step, reps)
            rows.append(row)
    torch.set_num_threads(default_threads)

    def mb(value):
        return "n/a" if value is None else f"{value / 2**20:,.1f}"

    header = ["D", "threads"] + [f"{name} (ms)" for name in NAMES]
    header += ["vs geoopt", "vs matmul"] + [f"{name} peak (MB)" for name in NAMES]
    table = []
    for row in rows:
        s, mem = row.seconds, row.extra["peak_bytes"]
        row.extra.update(
            speedup_vs_geoopt=s["geoopt"] / s["geolayers"],
            speedup_vs_matmul=s["matmul"] / s["geolayers"],
        )
        table.append(
            [row.config["D"], row.config["threads"]]
            + [f"{1e3 * s[name]:,.1f}" for name in NAMES]
            + [f"{row.extra['speedup_vs_geoopt']:.1f}x", f"{row.extra['speedup_vs_matmul']:.2f}x"]
            + [mb(mem[name]) for name in NAMES]
        )
    print(
        f"pairwise Poincare distance, forward+backward, N = M = {n:,} float32, median of "
        f"{repeats} (geoopt: {max(1, repeats // 2) if not args.smoke else repeats}); peak = "
        f"resident memory added by one forward+backward (1 thread); {machine_line()}; "
        f"geolayers backend: {backend()['poincare_pairwise_dist']}\n"
    )
    print(markdown_table(header, table))
    prec = precision(8 if args.smoke else 64)
    print(
        "\nlargest relative error against 50-digit mpmath (D = 8; nearby: y = x (1 - 10 eps) at "
        "the norm 1 - 1e-3 in float32, 1 - 1e-5 in float64; pass: < 1e-4 / < 1e-9)\n"
    )
    print(markdown_table(["dtype", "points", *NAMES], prec))
    write_json(
        args.json,
        "hyperbolic_ops",
        rows,
        {"n": n, "dims": list(dims), "repeats": repeats, "precision": prec},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
