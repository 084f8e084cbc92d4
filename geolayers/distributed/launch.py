r"""Process groups for distributed training: join one, start several, fail loudly.

Three ways in, one code path:

* under ``torchrun`` (or any launcher that sets ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and
  ``MASTER_PORT``), :func:`init_distributed` joins the group through ``env://``;
* from a plain ``python script.py``, :func:`init_distributed` makes a one-process group on an
  in-memory store, so a script written for several processes runs unchanged on one;
* from tests and notebooks, :func:`spawn` starts ``world_size`` processes that meet over gloo
  on the loopback interface (a free port), runs a function in each and returns what every rank
  returned or raised, all within a deadline.

Every collective of :mod:`geolayers.distributed` runs inside :func:`collective`: when a peer
has died (its sockets close, gloo reports it at once) or stopped answering (the group's
``timeout`` passes), the error is re-raised as a ``RuntimeError`` that names the rank, the
world size and the operation, instead of a bare gloo message or a hang.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import pickle
import socket
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

__all__ = [
    "RankOutcome",
    "collective",
    "free_port",
    "get_rank",
    "get_world_size",
    "init_distributed",
    "is_main_process",
    "shutdown_distributed",
    "spawn",
]

#: Collective timeout of :func:`init_distributed` when none is given (seconds).
DEFAULT_TIMEOUT_S = 300.0


def get_rank(group: dist.ProcessGroup | None = None) -> int:
    """This process's rank in ``group`` (the default group if ``None``); ``0`` without one.

    Example:
        >>> get_rank()  # no process group: one process
        0
    """
    if not (dist.is_available() and dist.is_initialized()):
        return 0
    return dist.get_rank(group)


def get_world_size(group: dist.ProcessGroup | None = None) -> int:
    """Number of processes in ``group`` (the default group if ``None``); ``1`` without one.

    Example:
        >>> get_world_size()
        1
    """
    if not (dist.is_available() and dist.is_initialized()):
        return 1
    return dist.get_world_size(group)


def is_main_process(group: dist.ProcessGroup | None = None) -> bool:
    """Whether this is rank 0 (the process that prints, evaluates and writes summaries).

    Example:
        >>> is_main_process()
        True
    """
    return get_rank(group) == 0


def _check_timeout(timeout_s: object) -> float:
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)):
        raise TypeError(f"timeout_s must be a number of seconds, got {type(timeout_s).__name__}")
    if not 0 < timeout_s < float("inf"):
        raise ValueError(f"timeout_s must be positive and finite, got {timeout_s}")
    return float(timeout_s)


def init_distributed(
    backend: str = "gloo", *, timeout_s: float = DEFAULT_TIMEOUT_S
) -> tuple[int, int]:
    """Join the default process group; returns ``(rank, world_size)``.

    With ``RANK`` and ``WORLD_SIZE`` in the environment (``torchrun``), joins through
    ``env://``; without them, makes a one-process group on an in-memory store (no port, no
    peer). If a default group already exists, returns its rank and size. ``timeout_s`` bounds
    every collective: a peer that stops answering makes the others raise after it.

    Args:
        backend: ``"gloo"`` (CPU; what the tests use) or ``"nccl"`` (GPUs). (default: gloo)
        timeout_s: collective timeout in seconds. (default: ``300``)

    Example:
        >>> init_distributed()  # doctest: +SKIP
        (0, 1)
    """
    timeout_s = _check_timeout(timeout_s)
    if not dist.is_available():
        raise RuntimeError("torch.distributed is not available in this build of PyTorch")
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    timeout = datetime.timedelta(seconds=timeout_s)
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        dist.init_process_group(backend, init_method="env://", timeout=timeout)
    else:
        # One process: an in-memory store instead of a TCP rendezvous, so nothing listens.
        dist.init_process_group(
            backend, store=dist.HashStore(), rank=0, world_size=1, timeout=timeout
        )
    return dist.get_rank(), dist.get_world_size()


def shutdown_distributed() -> None:
    """Destroy the default process group if there is one (safe to call twice)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on now (the OS's choice).

    Another process may take it before the rendezvous binds it; on loopback, in tests, that
    race is negligible.

    Example:
        >>> 0 < free_port() < 65536
        True
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def collective(op: str, group: dist.ProcessGroup | None = None) -> Iterator[None]:
    """Run the collectives of ``op`` and turn their failures into a ``RuntimeError`` that says
    which rank failed in which operation.

    Gloo reports a dead peer as a read error and a silent one as a timeout, with nothing about
    what the program was doing; this adds the rank, the world size and ``op``.

    Example:
        >>> with collective("all_reduce of the loss"):
        ...     pass
    """
    try:
        yield
    except Exception as err:  # gloo raises RuntimeError / DistBackendError subclasses
        rank, world = get_rank(group), get_world_size(group)
        raise RuntimeError(
            f"geolayers.distributed: rank {rank} of {world} failed in {op} "
            f"({type(err).__name__}: {err}); a peer process that died, closed its connection "
            f"or did not answer within the group's timeout shows up this way"
        ) from err


# --------------------------------------------------------------------- spawn


@dataclass
class RankOutcome:
    """What one spawned rank did.

    Attributes:
        rank: the rank.
        exitcode: the process's exit status; ``None`` if it was still running at the deadline
            (it is then killed).
        value: what the function returned (``None`` if it raised or died).
        error: ``"TypeName: message"`` of the exception it raised, else ``None``.
        traceback: the formatted traceback of that exception, else ``None``.
        seconds: wall time of the function in the process (``None`` if it did not finish).
    """

    rank: int
    exitcode: int | None
    value: Any = None
    error: str | None = None
    traceback: str | None = None
    seconds: float | None = None

    @property
    def ok(self) -> bool:
        """The function returned and the process exited with status 0."""
        return self.exitcode == 0 and self.error is None


def _spawn_entry(
    rank: int,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    world_size: int,
    port: int,
    backend: str,
    timeout_s: float,
    result_dir: str,
    threads: int | None,
) -> None:
    if threads is not None:
        torch.set_num_threads(threads)
    if sys.platform.startswith("linux"):
        # Keep gloo's data connections on loopback too, not only the rendezvous.
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    outcome: dict[str, Any] = {}
    start = time.perf_counter()
    try:
        dist.init_process_group(
            backend,
            init_method=f"tcp://127.0.0.1:{port}",
            rank=rank,
            world_size=world_size,
            timeout=datetime.timedelta(seconds=timeout_s),
        )
        outcome["value"] = fn(*args)
        outcome["seconds"] = time.perf_counter() - start
    except BaseException as err:  # report everything, SystemExit included
        outcome["error"] = f"{type(err).__name__}: {err}"
        outcome["traceback"] = traceback.format_exc()
    path = os.path.join(result_dir, f"rank{rank}.pt")
    try:
        torch.save(outcome, path + ".tmp")
    except (pickle.PicklingError, TypeError, AttributeError) as err:
        torch.save({"error": f"the return value of rank {rank} cannot be pickled: {err}"}, path)
    else:
        os.replace(path + ".tmp", path)
    if "error" in outcome:
        # Do not destroy the group: with a dead peer that may block; the exit frees it all.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)
    shutdown_distributed()


def spawn(
    fn: Callable[..., Any],
    world_size: int,
    args: Sequence[Any] = (),
    *,
    timeout_s: float = 120.0,
    collective_timeout_s: float = 30.0,
    backend: str = "gloo",
    threads: int | None = 1,
    start_method: str = "spawn",
    check: bool = True,
) -> list[RankOutcome]:
    """Run ``fn(*args)`` in ``world_size`` new processes that form a gloo group on loopback.

    Each process joins the default group (``tcp://127.0.0.1:<free port>``, collective timeout
    ``collective_timeout_s``), calls ``fn(*args)`` and reports its return value (pickled, so
    return tensors and plain data) or its exception. Unlike ``torch.multiprocessing.spawn``,
    which kills every other process as soon as one fails, the survivors are left to notice the
    failure themselves, so what each rank saw is reported; any process still alive after
    ``timeout_s`` is killed. ``fn`` must be importable by name (a module-level function).

    Args:
        fn: the function every rank runs; it can query :func:`get_rank` and
            :func:`get_world_size`.
        world_size: number of processes, ``>= 1``.
        args: arguments of ``fn`` (pickled into each process).
        timeout_s: deadline for the whole run, start-up included. (default: ``120``)
        collective_timeout_s: the group's collective timeout. (default: ``30``)
        backend: torch.distributed backend. (default: ``"gloo"``)
        threads: torch threads per process, ``None`` to leave torch's default.
            (default: ``1``: the processes share the machine's cores)
        start_method: multiprocessing start method; ``"spawn"`` is safe with threads and
            OpenMP, ``"fork"`` starts faster. (default: ``"spawn"``)
        check: raise ``RuntimeError`` (with every failed rank's error) if a rank failed.
            (default: ``True``)

    Returns:
        One :class:`RankOutcome` per rank, in rank order.

    Example:
        >>> [o.value for o in spawn(get_world_size, 2)]  # doctest: +SKIP
        [2, 2]
    """
    if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"world_size must be an int >= 1, got {world_size!r}")
    timeout_s = _check_timeout(timeout_s)
    collective_timeout_s = _check_timeout(collective_timeout_s)
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    ctx = torch.multiprocessing.get_context(start_method)
    port = free_port()
    deadline = time.monotonic() + timeout_s
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="geolayers-spawn-") as result_dir:
        procs = [
            ctx.Process(
                target=_spawn_entry,
                args=(
                    rank,
                    fn,
                    tuple(args),
                    world_size,
                    port,
                    backend,
                    collective_timeout_s,
                    result_dir,
                    threads,
                ),
                daemon=False,
            )
            for rank in range(world_size)
        ]
        late: set[int] = set()
        try:
            for p in procs:
                p.start()
            for p in procs:
                p.join(max(0.0, deadline - time.monotonic()))
        finally:
            for rank, p in enumerate(procs):
                if p.is_alive():  # past the deadline: only our own children are killed
                    late.add(rank)
                    p.kill()
                    p.join(5)
        for rank, p in enumerate(procs):
            outcome = RankOutcome(rank, None if rank in late else p.exitcode)
            path = os.path.join(result_dir, f"rank{rank}.pt")
            if os.path.exists(path):
                data = torch.load(path, weights_only=False)
                outcome.value = data.get("value")
                outcome.error = data.get("error")
                outcome.traceback = data.get("traceback")
                outcome.seconds = data.get("seconds")
            if outcome.error is None and rank in late:
                outcome.error = f"rank {rank} was still running at the {timeout_s:g} s deadline"
            elif outcome.error is None and not os.path.exists(path):
                outcome.error = f"rank {rank} exited with status {p.exitcode} without reporting"
            outcomes.append(outcome)
    if check and not all(o.ok for o in outcomes):
        lines = [
            f"rank {o.rank} (exit {o.exitcode}): {o.error}\n{o.traceback or ''}"
            for o in outcomes
            if not o.ok
        ]
        raise RuntimeError("spawned ranks failed:\n" + "\n".join(lines))
    return outcomes
