"""Object discovery out of distribution: slot attention against invariant slot attention
(ISA-T, ISA-TS) trained with the same budget, the data-efficiency and pose-generalisation
experiment of Biza et al. 2023 (https://arxiv.org/abs/2302.04973), shrunk to a CPU.

Every model is trained by ``examples/object_discovery.py`` (imported from there, so the two
cannot drift apart) with the same configuration: 512 training scenes of three tetrominoes
(35 x 35, object centres in the left half, scales 0.30-0.38), 4 slots of size 64 with learned
initial features, 3 rounds of attention, the same encoder and decoder sizes, batch, steps,
learning-rate schedule and seed. Quality: FG-ARI (adjusted Rand index of the decoder's mask
segmentation over the ground-truth foreground pixels, :func:`geolayers.metrics.fg_ari`, mean
over test scenes) on held-out scenes from the training distribution and on three
out-of-distribution splits (:data:`geolayers.datasets.multi_object.POSE_SPLITS`): objects in
the right half, objects 1.1-1.6x larger, and both.

Speed: time of one training step (forward, backward, Adam) on the same batch, median of
repeats taken round-robin over the models after training, so that load from other processes
falls on all of them alike; the ratio is against SA measured in the same run.

The models train in parallel, one worker process each (``--workers``, one torch thread per
worker), so that the benchmark uses both cores of the reference machine; three workers on two
cores each get two thirds of a core, alike, and the step times are measured afterwards, in the
main process, with the machine otherwise idle.

Run: ``python -m benchmarks.object_discovery [--smoke] [--steps N] [--workers N] [--json PATH]
[--png PATH]``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import functools
import importlib.util
import multiprocessing
import os
import statistics
import sys
import time
from dataclasses import asdict, replace

import torch
from torch import nn

from benchmarks._harness import Row, machine_line, markdown_table, write_json

MODELS = ("sa", "isa-t", "isa-ts")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@functools.cache
def load_example():
    """``examples/object_discovery.py`` as a module (its folder on ``sys.path`` for _common),
    loaded once per process: :func:`train_one` asks for it per model."""
    folder = os.path.join(ROOT, "examples")
    if folder not in sys.path:
        sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location(
        "_object_discovery_example", os.path.join(folder, "object_discovery.py")
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while a class is made
    spec.loader.exec_module(module)
    return module


def train_one(config: dict, progress: bool) -> tuple[dict, dict]:
    """Train and score one model from ``asdict`` of the example's ``Config``; returns the
    weights and the result (a worker's entry point: plain data in and out)."""
    example = load_example()
    model, result = example.train_and_evaluate(example.Config(**config), progress)
    return model.state_dict(), result


def train_all(example, cfg, workers: int, progress: bool) -> tuple[dict, dict]:
    """Every model of :data:`MODELS` trained with ``cfg``, ``workers`` at a time."""
    configs = {name: asdict(replace(cfg, model=name)) for name in MODELS}
    if workers == 1:
        done = {name: train_one(c, progress) for name, c in configs.items()}
    else:
        # spawn: a forked child would inherit the parent's OpenMP state.
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
            futures = {name: pool.submit(train_one, c, False) for name, c in configs.items()}
            done = {}
            for name, future in futures.items():
                done[name] = future.result()
                if progress:
                    print(f"{name} trained in {done[name][1]['train_seconds']:.0f} s", flush=True)
    models, results = {}, {}
    for name, (state, result) in done.items():
        model = example.build_model(replace(cfg, model=name))
        model.load_state_dict(state)
        models[name], results[name] = model, result
    return models, results


def step_times(models: dict, images: torch.Tensor, repeats: int) -> dict[str, float]:
    """Median seconds of one training step per model, measured round-robin."""
    opts = {name: torch.optim.Adam(m.parameters(), lr=1e-6) for name, m in models.items()}
    gen = torch.Generator().manual_seed(0)

    def step(name: str) -> float:
        model = models[name]
        start = time.perf_counter()
        loss = nn.functional.mse_loss(model(images, generator=gen).recon, images)
        opts[name].zero_grad(set_to_none=True)
        loss.backward()
        opts[name].step()
        return time.perf_counter() - start

    for model in models.values():
        model.train()
    for name in models:  # warm-up
        step(name)
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(repeats):
        for name in models:
            times[name].append(step(name))
    return {name: statistics.median(t) for name, t in times.items()}


def save_comparison(
    path: str, example, models: dict, scenes, rows: int = 5, iters: int | None = None
) -> None:
    """Input and each model's segmentation of the first ``rows`` scenes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    palette = example.PALETTE
    segs = {}
    for name, model in models.items():
        model.eval()
        with torch.no_grad():
            out = model(
                scenes.images[:rows], generator=torch.Generator().manual_seed(0), iters=iters
            )
        segs[name] = palette[out.masks.argmax(dim=1) % len(palette)]
    columns = ["input", "ground truth", *[n.upper() for n in models]]
    truth = torch.cat([torch.zeros(1, 3), palette])[scenes.masks[:rows] % (len(palette) + 1)]
    fig, axes = plt.subplots(rows, len(columns), figsize=(1.5 * len(columns), 1.5 * rows))
    for r in range(rows):
        images = [scenes.images[r].permute(1, 2, 0), truth[r], *[segs[n][r] for n in models]]
        for ax, image in zip(axes[r], images, strict=True):
            ax.imshow(image.clamp(0, 1).numpy(), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
    for ax, title in zip(axes[0], columns, strict=True):
        ax.set_title(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="tiny sizes, a few seconds")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    p.add_argument("--repeats", type=int, default=None, help="timed steps per model")
    p.add_argument("--steps", type=int, default=None, help="training steps per model")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads per model")
    p.add_argument(
        "--workers",
        type=int,
        default=len(MODELS),
        help=f"models trained at once, one process each (default: {len(MODELS)})",
    )
    p.add_argument(
        "--augment",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="flip training batches top to bottom and permute their colour channels "
        "(default: the example's Config)",
    )
    p.add_argument("--png", metavar="PATH", default=None, help="write the segmentation picture")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True)
    args = p.parse_args(argv)
    if args.workers < 1:
        p.error("--workers must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    example = load_example()
    cfg = example.SMOKE if args.smoke else example.Config()
    cfg = replace(cfg, threads=args.threads)
    if args.augment is not None:
        cfg = replace(cfg, augment=args.augment)
    if args.steps is not None:
        cfg = replace(cfg, steps=args.steps, warmup_steps=min(cfg.warmup_steps, args.steps))
    repeats = args.repeats or (2 if args.smoke else 20)
    start = time.perf_counter()
    workers = min(args.workers, len(MODELS))
    models, results = train_all(example, cfg, workers, args.progress)
    rows = [Row(config={"model": name}, extra=results[name]) for name in MODELS]
    train, tests = example.make_data(cfg)
    batch = train.images[: cfg.batch_size]
    seconds = step_times(models, batch, repeats)
    for row in rows:
        row.seconds = {"step": seconds[row.config["model"]]}
    wall = time.perf_counter() - start

    splits = list(example.SPLITS)
    header = [
        "model",
        *[f"FG-ARI {s} (%)" for s in splits],
        "ID - OOD (points)",
        "mBO in-dist. (%)",
        "ms / step",
        "step vs SA",
    ]
    table = []
    sa_step = seconds["sa"]
    for row in rows:
        scores = row.extra["scores"]
        ari = [100 * scores[s]["fg_ari"] for s in splits]
        drop = ari[0] - ari[-1]
        row.extra["ood_drop_points"] = drop
        table.append(
            [
                row.config["model"].upper(),
                *[f"{a:.1f}" for a in ari],
                f"{drop:+.1f}",
                f"{100 * scores['in-distribution']['mbo']:.1f}",
                f"{1e3 * row.seconds['step']:.0f}",
                f"{row.seconds['step'] / sa_step:.2f}x",
            ]
        )
    print(
        f"object discovery, {cfg.steps} steps x batch {cfg.batch_size} on {cfg.train_images} "
        f"training scenes (Tetrominoes-like, 35 x 35, 3 objects"
        f"{', batches flipped and colour-permuted at random' if cfg.augment else ''}), "
        f"{cfg.num_slots} slots x {cfg.slot_dim}, {cfg.iters} iterations in training and "
        f"{cfg.eval_iters} in testing; FG-ARI of the decoder masks on "
        f"{cfg.test_images} test scenes per split; step time: median of {repeats} round-robin "
        f"training steps of batch {cfg.batch_size}; {machine_line()}; models trained "
        f"{workers} at a time with {cfg.threads} thread(s) each, steps timed with "
        f"{torch.get_num_threads()} thread(s); wall {wall:.0f} s\n"
    )
    print(markdown_table(header, table))
    by = {row.config["model"]: row for row in rows}
    ts, sa = by["isa-ts"].extra, by["sa"].extra
    ts_id = 100 * ts["scores"]["in-distribution"]["fg_ari"]
    sa_id = 100 * sa["scores"]["in-distribution"]["fg_ari"]
    targets = [
        ("ISA-TS FG-ARI in distribution >= SA", ts_id >= sa_id),
        ("ISA-TS FG-ARI in distribution >= 85", ts_id >= 85),
        ("ISA-TS loses <= 5 points out of distribution", ts["ood_drop_points"] <= 5),
        ("SA loses more than ISA-TS", sa["ood_drop_points"] > ts["ood_drop_points"]),
        *[
            (f"{n.upper()} step <= 1.3x SA", seconds[n] <= 1.3 * sa_step)
            for n in MODELS
            if n != "sa"
        ],
    ]
    print()
    for text, ok in targets:
        print(f"- {text}: {'met' if ok else 'NOT met'}")
    if args.png:
        save_comparison(
            args.png, example, models, tests["OOD position + scale"], iters=cfg.eval_iters
        )
        stem, ext = os.path.splitext(args.png)
        example.save_picture(
            f"{stem}_isa-ts_slots{ext or '.png'}", models["isa-ts"], tests, iters=cfg.eval_iters
        )
        print(f"pictures written to {args.png} and {stem}_isa-ts_slots{ext or '.png'}")
    write_json(
        args.json,
        "object_discovery",
        rows,
        {
            "config": asdict(cfg),
            "repeats": repeats,
            "wall_seconds": wall,
            "threads": torch.get_num_threads(),
            "workers": workers,
            "targets": {text: ok for text, ok in targets},
            "machine": machine_line(),
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
