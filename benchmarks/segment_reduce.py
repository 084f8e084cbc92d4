"""Forward+backward of segment sum / mean / max over CSR segments, compiled op vs baselines.

Workload (full run): 2,000,000 rows x 64 float32 features in 20,000 segments whose sizes are
uniform in [0, 200] (adjusted to the exact total; a few are empty), at 1 and 2 threads.
Baselines, measured in the same run:

* ``torch.segment_reduce`` with ``offsets`` (``unsafe=True``: no input checks);
* ``torch_geometric.utils.scatter`` as PyG dispatches it on CPU (``scatter_add_`` for sum and
  mean, ``scatter_reduce_`` for max), with the segment id of every row precomputed;
* a padded implementation: ``to_dense_batch`` to ``(S, max_size, F)`` then reduce over dim 1.

Each entry is the median over repeats of one forward and one backward (with a fixed upstream
gradient). Run: ``python -m benchmarks.segment_reduce [--smoke] [--json PATH]``.

The compiled op asks for transparent huge pages on its large outputs (``madvise``), which cuts
the page-fault cost of a fresh 512 MB gradient buffer. torch's allocator does the same for every
tensor when ``THP_MEM_ALLOC_ENABLE=1`` is set; run with it to give the baselines that advantage
too (the header says which setting was in force).
"""

from __future__ import annotations

import os
import sys

import torch
from torch_geometric.utils import scatter, to_dense_batch

from benchmarks._harness import (
    Row,
    machine_line,
    markdown_table,
    median_time,
    parse_args,
    write_json,
)
from geolayers.ops import backend, segment_reduce_csr


def random_sizes(
    num_rows: int, num_segments: int, max_size: int, gen: torch.Generator
) -> torch.Tensor:
    """Segment sizes uniform in [0, max_size], nudged one row at a time to sum to num_rows."""
    sizes = torch.randint(0, max_size + 1, (num_segments,), generator=gen)
    diff = num_rows - int(sizes.sum())
    while diff != 0:
        step = 1 if diff > 0 else -1
        idx = torch.randint(0, num_segments, (abs(diff),), generator=gen)
        ok = (sizes[idx] + step >= 0) & (sizes[idx] + step <= max_size)
        idx = idx[ok].unique()
        idx = idx[: abs(diff)]
        sizes[idx] += step
        diff -= step * idx.numel()
    return sizes


def implementations(ptr: torch.Tensor, batch: torch.Tensor, num_segments: int):
    def ours(src, reduce):
        return segment_reduce_csr(src, ptr, reduce)

    nonempty = (ptr[1:] > ptr[:-1]).unsqueeze(1)

    def torch_segment(src, reduce):
        # Empty segments give NaN (mean) or -inf (max) in torch; map them to 0 like the others.
        if reduce == "max":
            out = torch.segment_reduce(src, reduce, offsets=ptr, unsafe=True)
            return torch.where(nonempty, out, torch.zeros_like(out))
        return torch.segment_reduce(src, reduce, offsets=ptr, unsafe=True, initial=0.0)

    def pyg_scatter(src, reduce):
        return scatter(src, batch, dim=0, dim_size=num_segments, reduce=reduce)

    def padded(src, reduce):
        fill = {"sum": 0.0, "mean": 0.0, "max": float("-inf")}[reduce]
        dense, mask = to_dense_batch(src, batch, fill_value=fill, batch_size=num_segments)
        if reduce == "sum":
            return dense.sum(1)
        if reduce == "mean":
            return dense.sum(1) / mask.sum(1, keepdim=True).clamp_min(1)
        out = dense.amax(1)
        return torch.where(mask.any(1, keepdim=True), out, torch.zeros_like(out))

    return {
        "geolayers segment_reduce_csr": ours,
        "torch.segment_reduce": torch_segment,
        "PyG scatter": pyg_scatter,
        "padded (to_dense_batch)": padded,
    }


def main(argv=None) -> int:
    args = parse_args(__doc__.splitlines()[0], argv)
    if args.smoke:
        num_rows, num_segments, feats, max_size, repeats = 20_000, 200, 16, 200, args.repeats or 2
    else:
        num_rows, num_segments, feats, max_size, repeats = (
            2_000_000,
            20_000,
            64,
            200,
            args.repeats or 5,
        )
    gen = torch.Generator().manual_seed(0)
    sizes = random_sizes(num_rows, num_segments, max_size, gen)
    ptr = torch.zeros(num_segments + 1, dtype=torch.long)
    ptr[1:] = sizes.cumsum(0)
    batch = torch.repeat_interleave(torch.arange(num_segments), sizes)
    src = torch.randn(num_rows, feats, generator=gen).requires_grad_()
    grad_out = torch.randn(num_segments, feats, generator=gen)
    impls = implementations(ptr, batch, num_segments)

    # Agreement check before timing: every baseline must compute the same reduction.
    for reduce in ("sum", "mean", "max"):
        expect = impls["geolayers segment_reduce_csr"](src, reduce)
        for name, fn in impls.items():
            got = fn(src, reduce)
            if not torch.allclose(got, expect, atol=1e-4, rtol=1e-4):
                raise SystemExit(f"{name} disagrees with the compiled op for reduce={reduce}")

    rows: list[Row] = []
    default_threads = torch.get_num_threads()
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for reduce in ("sum", "mean", "max"):
            row = Row(config={"reduce": reduce, "threads": threads})
            for name, fn in impls.items():

                def step(fn=fn, reduce=reduce):
                    src.grad = None
                    fn(src, reduce).backward(grad_out)

                row.seconds[name] = median_time(step, repeats)
            rows.append(row)
    torch.set_num_threads(default_threads)

    names = list(impls)
    header = [
        "reduce",
        "threads",
        *[f"{n} (ms)" for n in names],
        "best baseline",
        "speed-up vs best",
    ]
    table = []
    for row in rows:
        ours = row.seconds[names[0]]
        best_name = min(names[1:], key=lambda n: row.seconds[n])
        speedup = row.seconds[best_name] / ours
        row.extra = {"best_baseline": best_name, "speedup_vs_best": speedup}
        table.append(
            [row.config["reduce"], row.config["threads"]]
            + [f"{1e3 * row.seconds[n]:.1f}" for n in names]
            + [best_name, f"{speedup:.2f}x"]
        )
    print(
        f"segment reduce, forward+backward, {num_rows:,} x {feats} float32 rows in "
        f"{num_segments:,} segments (sizes uniform in [0, {max_size}]), median of {repeats}; "
        f"{machine_line()}; geolayers backend: {backend()['segment_reduce_csr']}; "
        f"THP_MEM_ALLOC_ENABLE={os.environ.get('THP_MEM_ALLOC_ENABLE', 'unset')}\n"
    )
    print(markdown_table(header, table))
    write_json(
        args.json,
        "segment_reduce",
        rows,
        {"num_rows": num_rows, "features": feats, "segments": num_segments, "repeats": repeats},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
