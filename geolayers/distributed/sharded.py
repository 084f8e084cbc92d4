r"""Embedding tables spread over processes: :class:`ShardedEmbedding`, :class:`ReplicatedEmbedding`.

Both tables answer the same two calls, so a training step is written once for either:

* ``fetch(rows)`` -> :class:`RowFetch`: the current values of the (deduplicated) rows a batch
  needs;
* ``push(fetch, updates, rule)``: one update row per fetched row; every update of a row, from
  every rank, is **summed** and the sum applied once to the row's old value (``rule=None``:
  added; else ``rule(old_rows, summed_updates) -> new_rows``, e.g. a Riemannian SGD step).

Summing makes a step **synchronous**: all ranks compute their updates from the same old
values, as one process would for the concatenation of their batches, so one step on ``R``
ranks equals one single-process step on the global batch (up to the order of floating-point
additions). Each rank's update must then be its share of the global batch's gradient (a sum
loss: the plain gradient; a mean loss: scaled by ``local / global`` batch size); averaging
(DDP) would divide the learning rate by ``R``.

**Sharded** (:class:`ShardedEmbedding`, tables larger than one machine): rank ``r`` owns the
contiguous rows ``[N r // R, N (r + 1) // R)`` (:mod:`geolayers.distributed.partition`).
``fetch`` is three ``all_to_all`` exchanges: the number of rows asked of each owner, the row ids,
the row values sent back; ``push`` is one more: the update rows, sent to the owners (who
already have the ids from the fetch), which sum and apply them. Only rows a batch touches
travel, never the table.

**Replicated** (:class:`ReplicatedEmbedding`, tables that fit in every process): every rank
holds the whole table; ``fetch`` is local, and ``push`` is an ``all_gather`` of every rank's
``(row ids, updates)``, which every rank sums and applies in rank order, so the replicas stay
bitwise identical.

Checkpoints are written per shard (:meth:`ShardedEmbedding.save_sharded`: one file per rank
with its row range, replicated tables write the same files) and read back into one tensor by
:func:`load_sharded_into_single`, or into a table on any number of ranks by ``load_sharded``.
Every collective is wrapped by :func:`geolayers.distributed.launch.collective`, and every byte
sent to another rank is counted in ``table.stats`` (:class:`CommStats`).
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
import torch.distributed as dist
from torch import Tensor

from geolayers._checks import check_positive_int, describe
from geolayers.distributed.launch import collective, get_rank, get_world_size
from geolayers.distributed.partition import even_bounds, owner_of

__all__ = [
    "CommStats",
    "EmbeddingTable",
    "ReplicatedEmbedding",
    "RowFetch",
    "ShardedEmbedding",
    "embedding_table",
    "load_sharded_into_single",
    "shard_path",
    "uniform_init",
]

_FORMAT = "geolayers.distributed.embedding_shard/1"
_INDEX_BYTES = 8  # row ids and counts travel as int64

#: ``init(start, end, dim) -> (end - start, dim)``: the initial values of rows ``[start, end)``.
RowInit = Callable[[int, int, int], Tensor]
#: ``rule(old_rows (M, D), summed_updates (M, D)) -> new_rows (M, D)``.
UpdateRule = Callable[[Tensor, Tensor], Tensor]


@dataclass
class CommStats:
    """Bytes this rank sent to *other* ranks (its own share stays in memory), by kind.

    Attributes:
        ids_bytes: row ids (int64) asked of owners (sharded) or broadcast with updates
            (replicated).
        rows_bytes: row values sent back by owners (sharded ``fetch``).
        updates_bytes: update rows (gradients or deltas) sent.
        meta_bytes: per-peer counts and sizes (int64).
        collectives: collective calls made.
    """

    ids_bytes: int = 0
    rows_bytes: int = 0
    updates_bytes: int = 0
    meta_bytes: int = 0
    collectives: int = 0

    @property
    def total_bytes(self) -> int:
        """All bytes sent."""
        return self.ids_bytes + self.rows_bytes + self.updates_bytes + self.meta_bytes

    def reset(self) -> None:
        """Set every counter to 0."""
        self.ids_bytes = self.rows_bytes = self.updates_bytes = self.meta_bytes = 0
        self.collectives = 0

    def __add__(self, other: CommStats) -> CommStats:
        return CommStats(*(a + b for a, b in zip(self.as_tuple(), other.as_tuple(), strict=True)))

    def as_tuple(self) -> tuple[int, ...]:
        return (self.ids_bytes, self.rows_bytes, self.updates_bytes, self.meta_bytes,
                self.collectives)  # fmt: skip

    def as_dict(self) -> dict[str, int]:
        """The counters and ``total_bytes`` as a dict (for JSON)."""
        return {**asdict(self), "total_bytes": self.total_bytes}


@dataclass
class RowFetch:
    """The rows a batch asked for, as :meth:`ShardedEmbedding.fetch` returns them.

    Attributes:
        rows: ``(M,)`` int64 distinct row ids, ascending.
        values: ``(M, D)`` their values when fetched (a copy: writing to it changes nothing).
        inverse: ``(n,)`` int64 position in ``rows`` of each requested id, so
            ``values[inverse]`` are the rows in the order asked.
    """

    rows: Tensor
    values: Tensor
    inverse: Tensor
    # The exchange plan, reused by push: rows sent to / received from each rank, and the ids
    # the other ranks asked of this one (sharded), in rank order.
    _send_counts: list[int] = field(default_factory=list, repr=False)
    _recv_counts: list[int] = field(default_factory=list, repr=False)
    _recv_ids: Tensor | None = field(default=None, repr=False)
    _table: object = field(default=None, repr=False)


def uniform_init(seed: int, low: float, high: float, block: int = 4096) -> RowInit:
    """Initial rows uniform in ``[low, high)``, the same for any partition of the table.

    Rows are drawn in blocks of ``block`` rows, block ``b`` from a generator seeded by
    ``(seed, b)``, so a rank draws only the blocks that overlap its rows and the table does
    not depend on the number of ranks.

    Example:
        >>> init = uniform_init(0, -1.0, 1.0)
        >>> torch.equal(init(3, 5, 4), init(0, 8, 4)[3:5]), tuple(init(0, 2, 4).shape)
        (True, (2, 4))
    """
    check_positive_int("block", block)

    def init(start: int, end: int, dim: int) -> Tensor:
        parts = []
        for b in range(start // block, -(-end // block)):
            gen = torch.Generator().manual_seed((seed * 1_000_003 + b) % 2**63)
            rows = torch.rand(block, dim, generator=gen, dtype=torch.float64)
            lo, hi = max(start, b * block), min(end, (b + 1) * block)
            parts.append(rows[lo - b * block : hi - b * block])
        out = torch.cat(parts) if parts else torch.empty(0, dim, dtype=torch.float64)
        return low + (high - low) * out

    return init


def shard_path(path_prefix: str | os.PathLike[str], rank: int, world_size: int) -> str:
    """The checkpoint file of ``rank`` of ``world_size``: ``PREFIX.shard-RRRRR-of-WWWWW.pt``.

    Example:
        >>> shard_path("ckpt/emb", 1, 4)
        'ckpt/emb.shard-00001-of-00004.pt'
    """
    return f"{os.fspath(path_prefix)}.shard-{rank:05d}-of-{world_size:05d}.pt"


_SHARD_RE = re.compile(r"\.shard-(\d{5})-of-(\d{5})\.pt$")


def _shard_files(path_prefix: str | os.PathLike[str]) -> dict[int, str]:
    """``{rank: path}`` of the checkpoint ``path_prefix`` (one world size, all ranks)."""
    prefix = os.fspath(path_prefix)
    found: dict[int, dict[int, str]] = {}
    for path in glob.glob(glob.escape(prefix) + ".shard-*-of-*.pt"):
        m = _SHARD_RE.search(path)
        if m and path[: m.start()] == prefix:
            found.setdefault(int(m.group(2)), {})[int(m.group(1))] = path
    if not found:
        raise FileNotFoundError(
            f"no checkpoint shards {prefix}.shard-RRRRR-of-WWWWW.pt (path_prefix={prefix!r})"
        )
    if len(found) > 1:
        raise ValueError(
            f"path_prefix={prefix!r} holds shards of several world sizes {sorted(found)}; "
            "remove the stale ones"
        )
    ((world, files),) = found.items()
    missing = sorted(set(range(world)) - set(files))
    if missing:
        raise FileNotFoundError(
            f"checkpoint {prefix!r} of world size {world} lacks the shards of ranks {missing}"
        )
    return files


def _load_shard(path: str) -> dict:
    # mmap: a rank that reshards reads only the pages of the rows it needs.
    data = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    if not isinstance(data, dict) or data.get("format") != _FORMAT:
        raise ValueError(f"{path} is not a geolayers embedding shard (format {_FORMAT})")
    return data


def _read_rows(path_prefix: str | os.PathLike[str], start: int, end: int) -> Tensor:
    """Rows ``[start, end)`` of the checkpoint ``path_prefix``, from the shards that hold them."""
    shards = [_load_shard(p) for _, p in sorted(_shard_files(path_prefix).items())]
    num_rows = shards[0]["num_rows"]
    expected = 0
    for s in shards:
        if s["row_start"] != expected or s["num_rows"] != num_rows:
            raise ValueError(
                f"checkpoint {os.fspath(path_prefix)!r}: shard of rank {s['rank']} holds rows "
                f"[{s['row_start']}, {s['row_end']}) of {s['num_rows']}, expected to start at "
                f"{expected} of {num_rows}"
            )
        expected = s["row_end"]
    if expected != num_rows:
        raise ValueError(
            f"checkpoint {os.fspath(path_prefix)!r}: shards cover rows [0, {expected}) of {num_rows}"
        )
    if not 0 <= start <= end <= num_rows:
        raise ValueError(f"rows [{start}, {end}) are outside the checkpoint's [0, {num_rows})")
    parts = [
        s["rows"][
            max(start, s["row_start"]) - s["row_start"] : min(end, s["row_end"]) - s["row_start"]
        ]
        for s in shards
        if s["row_start"] < end and s["row_end"] > start
    ]
    dim = shards[0]["dim"]
    if not parts:
        return torch.empty(0, dim, dtype=shards[0]["rows"].dtype)
    return torch.cat(parts).clone()


def load_sharded_into_single(path_prefix: str | os.PathLike[str]) -> Tensor:
    """The whole table ``(N, D)`` of a checkpoint written by ``save_sharded`` on any number of
    ranks, for a single-process model (e.g. ``node2vec.embedding.weight.copy_(...)``).

    Raises ``FileNotFoundError`` if a shard is missing, ``ValueError`` if the shards do not
    tile ``[0, N)`` or come from several world sizes.

    Example:
        >>> t = ShardedEmbedding(5, 2, init=torch.arange(10.0).view(5, 2))
        >>> import tempfile, os; d = tempfile.mkdtemp()
        >>> _ = t.save_sharded(os.path.join(d, "emb"))
        >>> load_sharded_into_single(os.path.join(d, "emb"))[4].tolist()
        [8.0, 9.0]
    """
    files = _shard_files(path_prefix)
    num_rows = _load_shard(files[0])["num_rows"]
    return _read_rows(path_prefix, 0, num_rows)


class EmbeddingTable:
    """What :class:`ShardedEmbedding` and :class:`ReplicatedEmbedding` share: the shape, the
    row partition (owners, checkpoint shards), argument checks and the update rule."""

    def __init__(
        self,
        num_rows: int,
        dim: int,
        group: dist.ProcessGroup | None = None,
        *,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.num_rows = check_positive_int("num_rows", num_rows)
        self.dim = check_positive_int("dim", dim)
        if dtype not in (torch.float32, torch.float64):
            raise TypeError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        self.dtype = dtype
        self.group = group
        self.rank = get_rank(group)
        self.world_size = get_world_size(group)
        self.bounds = even_bounds(num_rows, self.world_size)
        self._bounds_t = torch.tensor(self.bounds, dtype=torch.long)
        self.row_start = self.bounds[self.rank]
        self.row_end = self.bounds[self.rank + 1]
        self.stats = CommStats()

    def owner(self, rows: Tensor) -> Tensor:
        """The rank that owns each row: ``rows: (...)`` int64 -> ``(...)`` int64.

        Example:
            >>> ShardedEmbedding(10, 4).owner(torch.tensor([0, 9])).tolist()  # one process
            [0, 0]
        """
        return owner_of(rows, self._bounds_t)

    def _initial_rows(self, init: object, start: int, end: int) -> Tensor:
        if init is None:
            return torch.zeros(end - start, self.dim, dtype=self.dtype)
        if isinstance(init, Tensor):
            if init.shape != (self.num_rows, self.dim):
                raise ValueError(
                    f"init must be a tensor of shape (num_rows, dim) = ({self.num_rows}, "
                    f"{self.dim}), got {tuple(init.shape)}"
                )
            return init[start:end].to(self.dtype).clone()
        if callable(init):
            rows = init(start, end, self.dim)
            if not isinstance(rows, Tensor) or rows.shape != (end - start, self.dim):
                raise ValueError(
                    f"init(start, end, dim) must return a tensor of shape (end - start, dim) = "
                    f"({end - start}, {self.dim}), got {describe(rows)}"
                )
            return rows.to(self.dtype).contiguous()
        raise TypeError(
            f"init must be None, a tensor (num_rows, dim) or a callable (start, end, dim) -> rows, "
            f"got {type(init).__name__}"
        )

    def _check_rows(self, op: str, rows: object) -> Tensor:
        if not isinstance(rows, Tensor) or rows.dtype != torch.int64:
            raise TypeError(f"{op}: rows must be an int64 tensor (n,), got {describe(rows)}")
        rows = rows.reshape(-1)
        if rows.numel():
            lo, hi = int(rows.min()), int(rows.max())
            if lo < 0 or hi >= self.num_rows:
                raise IndexError(
                    f"{op}: rows must lie in [0, num_rows = {self.num_rows}), got the range "
                    f"[{lo}, {hi}]"
                )
        return rows

    def _check_updates(self, fetch: RowFetch, updates: object) -> Tensor:
        if not isinstance(fetch, RowFetch) or fetch._table is not self:
            raise TypeError("push: fetch must be the RowFetch this table's fetch() returned")
        if not isinstance(updates, Tensor) or not updates.is_floating_point():
            raise TypeError(f"push: updates must be a float tensor (M, D), got {describe(updates)}")
        shape = (fetch.rows.numel(), self.dim)
        if tuple(updates.shape) != shape:
            raise ValueError(
                f"push: updates must have shape (M, D) = {shape} (one row per fetched row), "
                f"got {tuple(updates.shape)}"
            )
        return updates.detach().to(self.dtype).contiguous()

    @staticmethod
    def _apply(table: Tensor, index: Tensor, updates: Tensor, rule: UpdateRule | None) -> None:
        """Sum the updates of each row of ``table`` named in ``index`` and apply them once."""
        if rule is None:
            table.index_add_(0, index, updates)
            return
        rows, inverse = torch.unique(index, sorted=True, return_inverse=True)
        summed = updates.new_zeros(rows.numel(), updates.shape[1]).index_add_(0, inverse, updates)
        table[rows] = rule(table[rows], summed).to(table.dtype)

    def _count(self, kind: str, nbytes: int, calls: int = 1) -> None:
        setattr(self.stats, kind, getattr(self.stats, kind) + int(nbytes))
        self.stats.collectives += calls

    def _shard_rows(self) -> Tensor:
        raise NotImplementedError

    def save_sharded(self, path_prefix: str | os.PathLike[str]) -> str:
        """Write this rank's rows ``[row_start, row_end)`` to :func:`shard_path` and wait for
        every rank to have written its file (a barrier). Returns the file written.

        The files of all ranks make the checkpoint; read it with
        :func:`load_sharded_into_single` or ``load_sharded`` (any number of ranks).

        Example:
            >>> import tempfile, os
            >>> os.path.basename(ShardedEmbedding(3, 2).save_sharded(os.path.join(tempfile.mkdtemp(), "e")))
            'e.shard-00000-of-00001.pt'
        """
        path = shard_path(path_prefix, self.rank, self.world_size)
        folder = os.path.dirname(path)
        if folder:
            os.makedirs(folder, exist_ok=True)
        state = {
            "format": _FORMAT,
            "rows": self._shard_rows().detach().clone(),
            "row_start": self.row_start,
            "row_end": self.row_end,
            "num_rows": self.num_rows,
            "dim": self.dim,
            "rank": self.rank,
            "world_size": self.world_size,
        }
        torch.save(state, path + ".tmp")
        os.replace(path + ".tmp", path)  # a crash mid-write leaves no half shard
        if self.world_size > 1:
            with collective("save_sharded: barrier after writing the shards", self.group):
                dist.barrier(group=self.group)
                self.stats.collectives += 1
        return path

    def _load_rows(self, path_prefix: str | os.PathLike[str], start: int, end: int) -> Tensor:
        files = _shard_files(path_prefix)
        head = _load_shard(files[0])
        if head["num_rows"] != self.num_rows or head["dim"] != self.dim:
            raise ValueError(
                f"checkpoint {os.fspath(path_prefix)!r} holds a ({head['num_rows']}, "
                f"{head['dim']}) table, this one is ({self.num_rows}, {self.dim})"
            )
        return _read_rows(path_prefix, start, end).to(self.dtype)


class ShardedEmbedding(EmbeddingTable):
    r"""An ``(N, D)`` table split by rows over the ranks of ``group``; each holds its block.

    Rank ``r`` of ``R`` owns rows ``[N r // R, N (r + 1) // R)`` (``row_start``, ``row_end``)
    in ``local_rows``. A training step calls :meth:`fetch` for the rows its batch needs,
    computes its update rows, and :meth:`push`\ es them to the owners; both are collective
    (every rank calls them, in the same order, possibly with no rows). Without a process
    group (or with one process) it is a plain local table.

    Args:
        num_rows: ``N``.
        dim: ``D``.
        group: process group. (default: the default group, or none)
        dtype: float32 or float64. (default: float32)
        init: initial values: ``None`` (zeros), an ``(N, D)`` tensor (each rank keeps its
            rows) or ``init(start, end, D) -> (end - start, D)`` (e.g. :func:`uniform_init`,
            which needs no full table anywhere). (default: zeros)

    Attributes:
        local_rows: ``(row_end - row_start, D)`` this rank's rows.
        stats: :class:`CommStats`, bytes sent by this rank.

    Example:
        >>> t = ShardedEmbedding(4, 2, init=torch.ones(4, 2))
        >>> f = t.fetch(torch.tensor([3, 1, 3]))
        >>> t.push(f, torch.full((2, 2), 0.5)); t.local_rows[:, 0].tolist()
        [1.0, 1.5, 1.0, 1.5]
    """

    def __init__(
        self,
        num_rows: int,
        dim: int,
        group: dist.ProcessGroup | None = None,
        *,
        dtype: torch.dtype = torch.float32,
        init: Tensor | RowInit | None = None,
    ) -> None:
        super().__init__(num_rows, dim, group, dtype=dtype)
        self.local_rows = self._initial_rows(init, self.row_start, self.row_end)

    @property
    def num_local_rows(self) -> int:
        """Rows held by this rank."""
        return self.row_end - self.row_start

    def _shard_rows(self) -> Tensor:
        return self.local_rows

    def _all_to_all(self, op: str, out: Tensor, inp: Tensor, out_split, in_split) -> None:
        with collective(op, self.group):
            dist.all_to_all_single(out, inp, out_split, in_split, group=self.group)

    def fetch(self, rows: Tensor) -> RowFetch:
        """The current values of ``rows: (n,)`` int64 (repeats allowed), from their owners.

        Collective. Exchanges, with ``all_to_all``: the number of distinct rows asked of each
        rank, their ids, and the values the owners send back.

        Returns:
            :class:`RowFetch` (distinct ``rows``, their ``values``, ``inverse``).
        """
        rows = self._check_rows("fetch", rows)
        uniq, inverse = torch.unique(rows, sorted=True, return_inverse=True)
        if self.world_size == 1:
            values = self.local_rows[uniq]
            return RowFetch(uniq, values, inverse, [uniq.numel()], [uniq.numel()], uniq, self)
        world, row_bytes = self.world_size, self.dim * self.local_rows.element_size()
        # uniq is sorted and owners hold contiguous ranges: each owner's ids are one slice.
        send_counts = torch.bincount(self.owner(uniq), minlength=world)
        recv_counts = torch.empty_like(send_counts)
        self._all_to_all("fetch (all_to_all of row counts)", recv_counts, send_counts, None, None)
        send, recv = send_counts.tolist(), recv_counts.tolist()
        recv_ids = uniq.new_empty(sum(recv))
        self._all_to_all("fetch (all_to_all of row ids)", recv_ids, uniq, recv, send)
        reply = self.local_rows[recv_ids - self.row_start]
        values = reply.new_empty(uniq.numel(), self.dim)
        self._all_to_all("fetch (all_to_all of row values)", values, reply, send, recv)
        me = self.rank
        self._count("meta_bytes", (world - 1) * _INDEX_BYTES)
        self._count("ids_bytes", (sum(send) - send[me]) * _INDEX_BYTES)
        self._count("rows_bytes", (sum(recv) - recv[me]) * row_bytes)
        return RowFetch(uniq, values, inverse, send, recv, recv_ids, self)

    def push(self, fetch: RowFetch, updates: Tensor, rule: UpdateRule | None = None) -> None:
        """Send ``updates: (M, D)``, one per row of ``fetch.rows``, to the owners, which sum
        the updates of each row over all ranks and apply the sum once.

        Collective (one ``all_to_all``). ``rule=None`` adds the sum to the row; otherwise the
        row becomes ``rule(old_row, summed_update)`` (e.g. a Riemannian SGD step).
        """
        updates = self._check_updates(fetch, updates)
        if self.world_size == 1:
            self._apply(self.local_rows, fetch.rows - self.row_start, updates, rule)
            return
        send, recv = fetch._send_counts, fetch._recv_counts
        received = updates.new_empty(sum(recv), self.dim)
        self._all_to_all("push (all_to_all of row updates)", received, updates, recv, send)
        row_bytes = self.dim * updates.element_size()
        self._count("updates_bytes", (sum(send) - send[self.rank]) * row_bytes)
        self._apply(self.local_rows, fetch._recv_ids - self.row_start, received, rule)

    def full(self) -> Tensor:
        """The whole table ``(N, D)`` on every rank: a dense ``all_gather``, for evaluation and
        export only (not counted in :attr:`stats`). Collective.

        Example:
            >>> ShardedEmbedding(3, 2).full().shape
            torch.Size([3, 2])
        """
        if self.world_size == 1:
            return self.local_rows.clone()
        # all_gather needs equal sizes: pad every shard to the largest.
        size = max(b - a for a, b in zip(self.bounds[:-1], self.bounds[1:], strict=True))
        padded = self.local_rows.new_zeros(size, self.dim)
        padded[: self.num_local_rows] = self.local_rows
        parts = [torch.empty_like(padded) for _ in range(self.world_size)]
        with collective("full (all_gather of the shards)", self.group):
            dist.all_gather(parts, padded, group=self.group)
        return torch.cat(
            [parts[r][: self.bounds[r + 1] - self.bounds[r]] for r in range(self.world_size)]
        )

    def load_sharded(self, path_prefix: str | os.PathLike[str]) -> None:
        """Replace this rank's rows by those of a checkpoint written on any number of ranks
        (each rank reads only the shards that overlap its rows). Not collective."""
        self.local_rows = self._load_rows(path_prefix, self.row_start, self.row_end)


class ReplicatedEmbedding(EmbeddingTable):
    """An ``(N, D)`` table held whole by every rank; updates are exchanged, not rows.

    :meth:`fetch` reads the local replica; :meth:`push` ``all_gather``\\ s every rank's
    ``(row ids, update rows)`` and each rank sums them per row and applies them in rank
    order, so the replicas stay identical. The updates are **summed** over ranks (not
    averaged as DDP does): each rank's update is its share of the global batch, so the sum is
    the single-process step on the global batch. For tables that fit in every process; the
    bytes sent grow with the number of ranks (every update goes to every rank).

    Args:
        num_rows, dim, group, dtype, init: as :class:`ShardedEmbedding` (every rank holds all
            rows, so a callable ``init`` is asked for ``(0, N)``).

    Attributes:
        weight: ``(N, D)`` the replica.
        stats: :class:`CommStats`.

    Example:
        >>> t = ReplicatedEmbedding(3, 1)
        >>> f = t.fetch(torch.tensor([2])); t.push(f, torch.ones(1, 1)); t.weight.flatten().tolist()
        [0.0, 0.0, 1.0]
    """

    def __init__(
        self,
        num_rows: int,
        dim: int,
        group: dist.ProcessGroup | None = None,
        *,
        dtype: torch.dtype = torch.float32,
        init: Tensor | RowInit | None = None,
    ) -> None:
        super().__init__(num_rows, dim, group, dtype=dtype)
        self.weight = self._initial_rows(init, 0, num_rows)

    @property
    def local_rows(self) -> Tensor:
        """``(row_end - row_start, D)`` the rows of this rank's checkpoint shard (a view)."""
        return self.weight[self.row_start : self.row_end]

    def _shard_rows(self) -> Tensor:
        return self.local_rows

    def fetch(self, rows: Tensor) -> RowFetch:
        """The values of ``rows: (n,)`` from the local replica (no communication)."""
        rows = self._check_rows("fetch", rows)
        uniq, inverse = torch.unique(rows, sorted=True, return_inverse=True)
        return RowFetch(uniq, self.weight[uniq], inverse, _table=self)

    def push(self, fetch: RowFetch, updates: Tensor, rule: UpdateRule | None = None) -> None:
        """``all_gather`` every rank's ``(fetch.rows, updates)``; every rank sums the updates
        of each row over all ranks and applies them once (``rule`` as
        :meth:`ShardedEmbedding.push`). Collective (three ``all_gather``: sizes, ids, rows)."""
        updates = self._check_updates(fetch, updates)
        if self.world_size == 1:
            self._apply(self.weight, fetch.rows, updates, rule)
            return
        world = self.world_size
        size = torch.tensor([fetch.rows.numel()], dtype=torch.long)
        sizes = [torch.empty_like(size) for _ in range(world)]
        with collective("push (all_gather of update counts)", self.group):
            dist.all_gather(sizes, size, group=self.group)
        counts = [int(s) for s in sizes]
        most = max(counts)
        # all_gather needs equal sizes: pad to the largest batch; the padding is cut off below.
        ids = fetch.rows.new_zeros(most)
        ids[: fetch.rows.numel()] = fetch.rows
        rows = updates.new_zeros(most, self.dim)
        rows[: updates.shape[0]] = updates
        all_ids = [torch.empty_like(ids) for _ in range(world)]
        all_rows = [torch.empty_like(rows) for _ in range(world)]
        with collective("push (all_gather of row ids)", self.group):
            dist.all_gather(all_ids, ids, group=self.group)
        with collective("push (all_gather of row updates)", self.group):
            dist.all_gather(all_rows, rows, group=self.group)
        self._count("meta_bytes", (world - 1) * _INDEX_BYTES)
        self._count("ids_bytes", (world - 1) * most * _INDEX_BYTES)
        self._count("updates_bytes", (world - 1) * most * self.dim * rows.element_size())
        index = torch.cat([all_ids[r][: counts[r]] for r in range(world)])
        summed = torch.cat([all_rows[r][: counts[r]] for r in range(world)])
        self._apply(self.weight, index, summed, rule)

    def full(self) -> Tensor:
        """The whole table ``(N, D)`` (a copy of the replica; no communication)."""
        return self.weight.clone()

    def load_sharded(self, path_prefix: str | os.PathLike[str]) -> None:
        """Replace the replica by a checkpoint written on any number of ranks. Not collective."""
        self.weight = self._load_rows(path_prefix, 0, self.num_rows)


_MODES = {"sharded": ShardedEmbedding, "replicated": ReplicatedEmbedding}


def embedding_table(
    mode: str,
    num_rows: int,
    dim: int,
    group: dist.ProcessGroup | None = None,
    *,
    dtype: torch.dtype = torch.float32,
    init: Tensor | RowInit | None = None,
) -> ShardedEmbedding | ReplicatedEmbedding:
    """A :class:`ShardedEmbedding` (``mode="sharded"``) or :class:`ReplicatedEmbedding`
    (``mode="replicated"``); the other arguments are theirs.

    Example:
        >>> type(embedding_table("replicated", 4, 2)).__name__
        'ReplicatedEmbedding'
    """
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {sorted(_MODES)}, got {mode!r}")
    return _MODES[mode](num_rows, dim, group, dtype=dtype, init=init)
