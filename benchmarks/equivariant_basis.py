"""Building equivariant linear layers from a cold cache, geolayers vs escnn; their forward+backward.

Construction (1 thread, median of repeats). Each geolayers repeat clears the basis caches and
builds the group and the representations anew, so nothing is reused; the time covers the group,
the representations and the basis (``equivariant_basis``) or the whole layer
(``EquivariantLinear``). escnn builds the same layer (``escnn.nn.Linear`` on ``no_base_space``
field types, the group included) in a fresh process per repeat, so its in-memory caches are cold
too, in two settings: its on-disk cache of Clebsch-Gordan coefficients and irrep decompositions
(joblib, inside the escnn package) warm, as after a first use, and switched off, as on a first
use. The cases:

* ``V (x) V -> V (x) V`` of ``SO(3)``. escnn's ``standard_representation().tensor(...)`` fails
  here (its numerical nullspace passes an ``np.matrix`` to sklearn's ``randomized_svd``, which
  this sklearn rejects), so the field type is built from irreps directly: ``V (x) V`` is
  ``0 + 1 + 2`` up to a fixed change of basis, the same space of maps (3 weights + 1 bias
  either way). Building ``Linear`` on those irreps still reaches the same nullspace routine, so
  the worker converts the argument to an ndarray before the call (a compatibility shim: same
  algorithm, same result).
* regular -> regular of ``D_8`` (order 16; escnn ``dihedral_group(8).regular_representation``).
* ``V (x) V -> V (x) V`` of ``S_10``: escnn has no symmetric group (its groups are cyclic,
  dihedral, O(2)/SO(2), O(3)/SO(3), the icosahedral and octahedral groups, their products and
  cylinder groups), so this row has geolayers only.

Forward+backward (batch 1024, float32, 1 thread, median of repeats): ``EquivariantLinear`` (which
folds its coefficients into a dense weight once per call) against a plain ``nn.Linear`` of the
same size, both with an input that requires grad (a hidden layer).

Run: ``python -m benchmarks.equivariant_basis [--smoke] [--json PATH]``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable

import torch

from benchmarks._harness import (
    Row,
    machine_line,
    markdown_table,
    median_time,
    parse_args,
    write_json,
)
from geolayers.equivariant import EquivariantLinear
from geolayers.groups import SO3, Dihedral, Regular, Symmetric, Vector, clear_basis_cache
from geolayers.groups import equivariant_basis as _equivariant_basis
from geolayers.testing import equivariance_error

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# -- the construction cases ------------------------------------------------------------------


def _so3():
    V = Vector(SO3())
    return SO3(), V * V, V * V


def _d8():
    G = Dihedral(8)
    return G, Regular(G), Regular(G)


def _s10():
    V = Vector(Symmetric(10))
    return V.G, V * V, V * V


CASES: dict[str, tuple[str, Callable]] = {
    "so3": ("SO(3), V(x)V -> V(x)V (9 -> 9)", _so3),
    "d8": ("D_8, regular -> regular (16 -> 16)", _d8),
    "s10": ("S_10, V(x)V -> V(x)V (100 -> 100)", _s10),
}

#: How escnn builds the matching layer; None where it has no construction for the group.
ESCNN_AVAILABLE = {"so3": True, "d8": True, "s10": False}


def _escnn_worker(case: str, disk_cache: bool) -> None:
    """Build escnn's layer once in this (fresh) process; print its time and parameter count."""
    import warnings

    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    import numpy as np
    from escnn import group as egroup
    from escnn import gspaces
    from escnn import nn as enn
    from escnn.group import _clebsh_gordan, _numerical, irrep

    sklearn_svd = _numerical.randomized_svd
    if sklearn_svd is not None:
        # np.matrix -> ndarray: the only change; this sklearn refuses np.matrix inputs.
        _numerical.randomized_svd = lambda A, **kw: sklearn_svd(np.asarray(A), **kw)
    if not disk_cache:
        # The joblib-memoised functions, called through their undecorated versions.
        for module, name in (
            (_clebsh_gordan, "_clebsh_gordan_tensor"),
            (_clebsh_gordan, "_find_tensor_decomposition"),
            (irrep, "_restrict_irrep"),
        ):
            fn = getattr(module, name)
            setattr(module, name, getattr(fn, "func", fn))
    start = time.perf_counter()
    if case == "so3":
        G = egroup.so3_group()
        field = enn.FieldType(gspaces.no_base_space(G), [G.irrep(0), G.irrep(1), G.irrep(2)])
    elif case == "d8":
        G = egroup.dihedral_group(8)
        field = enn.FieldType(gspaces.no_base_space(G), [G.regular_representation])
    else:
        raise ValueError(f"escnn has no construction for case {case!r}")
    layer = enn.Linear(field, field)
    seconds = time.perf_counter() - start
    params = sum(p.numel() for p in layer.parameters())
    print(json.dumps({"seconds": seconds, "params": params}))


def _escnn_times(case: str, disk_cache: bool, repeats: int, warmup: bool) -> dict | None:
    """Median seconds over fresh processes (and the parameter count), or None without escnn."""
    cmd = [sys.executable, "-m", "benchmarks.equivariant_basis", "--escnn-worker", case]
    if not disk_cache:
        cmd.append("--no-disk-cache")
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    runs = []
    for i in range(repeats + int(warmup)):
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
        if proc.returncode != 0:
            if "No module named 'escnn'" in proc.stderr:
                return None
            raise RuntimeError(f"escnn worker failed for {case}:\n{proc.stderr[-2000:]}")
        if i >= int(warmup):
            runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    times = sorted(r["seconds"] for r in runs)
    return {"seconds": times[len(times) // 2], "params": runs[0]["params"], "runs": len(runs)}


def _ours_cold(make: Callable, what: str) -> Callable[[], object]:
    def build():
        clear_basis_cache()
        _, rep_in, rep_out = make()  # new group and representations: no cached state
        if what == "basis":
            return _equivariant_basis(rep_in, rep_out)
        return EquivariantLinear(rep_in, rep_out)

    return build


# -- forward + backward --------------------------------------------------------------------------


def _fb_cases() -> dict[str, tuple[str, Callable]]:
    def so3():
        V = Vector(SO3())
        return SO3(), 16 * (V * V), 16 * (V * V)

    def d8():
        R = Regular(Dihedral(8))
        return R.G, 16 * R, 16 * R

    return {
        "fb_so3x16": ("SO(3), 16 V(x)V -> 16 V(x)V (144 -> 144)", so3),
        "fb_s10": ("S_10, V(x)V -> V(x)V (100 -> 100)", _s10),
        "fb_d8x16": ("D_8, 16 regular -> 16 regular (256 -> 256)", d8),
    }


def _fb_time(layer: torch.nn.Module, size_in: int, size_out: int, batch: int, repeats: int):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, size_in, generator=gen).requires_grad_()
    grad = torch.randn(batch, size_out, generator=gen)

    def step():
        x.grad = None
        layer.zero_grad(set_to_none=True)
        layer(x).backward(grad)

    return median_time(step, repeats, warmup=3)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--escnn-worker"]:
        _escnn_worker(argv[1], "--no-disk-cache" not in argv)
        return 0
    args = parse_args(__doc__.splitlines()[0], argv)
    smoke = args.smoke
    repeats = args.repeats or (1 if smoke else 7)
    escnn_repeats = args.repeats or (1 if smoke else 5)
    fb_repeats = args.repeats or (5 if smoke else 50)
    default_threads = torch.get_num_threads()
    torch.set_num_threads(1)

    rows: list[Row] = []
    build_table = []
    settings = [("escnn, disk cache warm", True)]
    if not smoke:
        settings.append(("escnn, no disk cache", False))
    for key, (label, make) in CASES.items():
        G, rep_in, rep_out = make()
        layer = EquivariantLinear(rep_in, rep_out).double()
        err = equivariance_error(layer, G, rep_in, rep_out)  # correctness first
        ours_params = layer.num_weights + layer.num_bias
        row = Row(config={"case": key, "kind": "construction", "what": label, "threads": 1})
        row.seconds["geolayers basis"] = median_time(_ours_cold(make, "basis"), repeats)
        row.seconds["geolayers EquivariantLinear"] = median_time(_ours_cold(make, "layer"), repeats)
        row.extra = {"params": {"geolayers": ours_params}, "equivariance_error": err}
        for name, disk in settings:
            result = None
            if ESCNN_AVAILABLE[key]:
                # The first process fills escnn's on-disk cache; it is not timed.
                result = _escnn_times(
                    key, disk, escnn_repeats if disk else 3, warmup=disk and not smoke
                )
            if result is not None:
                row.seconds[name] = result["seconds"]
                row.extra["params"]["escnn"] = result["params"]
        rows.append(row)
        ours = row.seconds["geolayers EquivariantLinear"]
        cells = [
            label,
            f"{1e3 * row.seconds['geolayers basis']:.2f}",
            f"{1e3 * ours:.2f}",
        ]
        for name, _ in settings:
            if name in row.seconds:
                ratio = row.seconds[name] / ours
                row.extra[f"speedup vs {name}"] = ratio
                cells += [f"{1e3 * row.seconds[name]:.1f}", f"{ratio:.1f}x"]
            else:
                cells += ["not available", "-"]
        escnn_params = row.extra["params"].get("escnn", "-")
        cells += [f"{ours_params} / {escnn_params}", f"{err:.1e}"]
        build_table.append(cells)

    header = ["layer", "geolayers basis (ms)", "geolayers EquivariantLinear (ms)"]
    for name, _ in settings:
        header += [f"{name} (ms)", f"{name.split(',')[1].strip()}: escnn / ours"]
    header += ["params ours / escnn", "equivariance error (f64)"]

    fb_rows, fb_table = [], []
    for key, (label, make) in _fb_cases().items():
        _, rep_in, rep_out = make()
        ours = EquivariantLinear(rep_in, rep_out)
        plain = torch.nn.Linear(rep_in.size, rep_out.size)
        batch = 1024
        t_ours = _fb_time(ours, rep_in.size, rep_out.size, batch, fb_repeats)
        t_plain = _fb_time(plain, rep_in.size, rep_out.size, batch, fb_repeats)
        row = Row(
            config={
                "case": key,
                "kind": "forward_backward",
                "what": label,
                "batch": batch,
                "threads": 1,
            },
            seconds={"EquivariantLinear": t_ours, "nn.Linear": t_plain},
            extra={
                "ratio": t_ours / t_plain,
                "route": "sharing" if ours.uses_sharing else "dense basis",
                "weights": ours.num_weights,
            },
        )
        fb_rows.append(row)
        fb_table.append(
            [
                label,
                row.extra["route"],
                ours.num_weights,
                f"{1e3 * t_ours:.3f}",
                f"{1e3 * t_plain:.3f}",
                f"{t_ours / t_plain:.2f}x",
            ]
        )
    torch.set_num_threads(default_threads)

    print(
        f"equivariant layer construction, cold caches, median of {repeats} (geolayers) and of "
        f"{escnn_repeats} fresh processes (escnn; 3 without its disk cache); 1 thread; "
        f"{machine_line()}\n"
    )
    print(markdown_table(header, build_table))
    print(
        f"\nforward+backward, batch 1024 float32, median of {fb_repeats}, 1 thread "
        f"(EquivariantLinear folds its weight once per call)\n"
    )
    print(
        markdown_table(
            [
                "layer",
                "route",
                "weights",
                "EquivariantLinear (ms)",
                "nn.Linear (ms)",
                "EquivariantLinear / nn.Linear",
            ],
            fb_table,
        )
    )
    write_json(
        args.json,
        "equivariant_basis",
        rows + fb_rows,
        {
            "repeats": repeats,
            "escnn_repeats": escnn_repeats,
            "fb_repeats": fb_repeats,
            "threads": 1,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
