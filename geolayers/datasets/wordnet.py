r"""Hierarchies as directed acyclic graphs: the WordNet noun hierarchy and users' edge lists.

The data of `"Poincare Embeddings for Learning Hierarchical Representations"
<https://arxiv.org/abs/1705.08039>`_ (Nickel and Kiela 2017, section 4.1): the transitive
closure of WordNet's is-a relation over nouns, 82,115 synsets and 743,241 (hyponym,
hypernym) pairs.

WordNet 3.0 comes from the database files that Debian's ``wordnet-base`` package installs in
``/usr/share/wordnet`` (``apt-get install wordnet-base``). Two of them are read:

* ``data.noun``: one line per synset: ``offset lex_filenum ss_type w_cnt word lex_id ...
  p_cnt [pointer_symbol offset pos source/target] ... | gloss``, with ``w_cnt`` in hex. The
  pointers ``@`` (hypernym) and ``@i`` (instance hypernym) are the is-a edges;
* ``index.noun``: one line per lemma, ending with the offsets of its synsets in sense order.

A synset is named as NLTK names it: ``lemma.n.NN``, where ``lemma`` is the synset's first
word in lower case and ``NN`` the position of the synset in that lemma's list of
``index.noun`` (``dog.n.01``, ``mammal.n.01``, ``abstraction.n.06``).

How the counts of the paper come out (checked against the files of ``wordnet-base``
1:3.0-37 and, for names and edges, against NLTK 3.10 reading the same files): the transitive
closure of the union of hypernym and instance-hypernym pointers, without self loops, has
exactly 82,115 nodes and 743,241 edges, the paper's figures. Hypernyms alone give 663,508
edges. The official implementation's ``transitive_closure.py`` (NLTK ``closure()`` over
hypernyms, plus the instance hypernyms of instances) gives 743,086: it misses 155 pairs
whose chain has an instance pointer after a hypernym pointer (``son.n.02 -> god.n.01``:
``son.n.02`` is an instance of ``hypostasis.n.03``, a kind of ``godhead.n.01``, which is an
instance of ``god.n.01``), so it is not the closure the paper counted. Synset names match
NLTK's for all 82,115 synsets.

The subtree of ``mammal.n.01`` (the synset and every synset with it in its closure, with the
closure edges among them) has 1,182 nodes and 6,542 edges under both definitions; the
official ``mammal_closure`` file also drops the two leaves ``tusker.n.01`` and
``female_mammal.n.01`` (its ``mammals_filter.txt``), leaving 1,180 nodes and 6,540 edges:
that is :func:`load_wordnet_mammals`.

Nothing here downloads.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

#: Where Debian's ``wordnet-base`` installs the WordNet 3.0 database.
DEFAULT_WORDNET_DIR = "/usr/share/wordnet"

#: Synsets the official ``mammal_closure`` leaves out of the ``mammal.n.01`` subtree.
MAMMAL_CLOSURE_EXCLUDE = ("tusker.n.01", "female_mammal.n.01")


@dataclass(frozen=True, eq=False)
class Hierarchy:
    """A hierarchy over ``N`` named nodes: its transitive closure and its direct edges.

    Edges point from the more specific node to the more general one (child -> ancestor,
    hyponym -> hypernym), as the (u, v) pairs of Nickel and Kiela's closure files.

    Attributes:
        names: ``N`` node names, sorted; node ``i`` is ``names[i]``.
        edges: ``(E, 2)`` int64 pairs ``(child, ancestor)`` of the transitive closure, without
            self loops or duplicates, sorted.
        direct_edges: ``(E_d, 2)`` int64 pairs ``(child, parent)``, a subset of ``edges``
            whose closure is ``edges``: the hypernym and instance-hypernym pointers for
            WordNet, the listed edges or their transitive reduction for
            :func:`load_edge_list`. Use them to build a spanning tree
            (:func:`geolayers.hyperbolic.trees.bfs_tree`).

    Example:
        >>> h = hierarchy_from_edges([("dog", "mammal"), ("mammal", "animal")])
        >>> h.names, h.edges.tolist()
        (['animal', 'dog', 'mammal'], [[1, 0], [1, 2], [2, 0]])
    """

    names: list[str]
    edges: Tensor
    direct_edges: Tensor
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", {name: i for i, name in enumerate(self.names)})

    @property
    def num_nodes(self) -> int:
        """``N``, the number of nodes."""
        return len(self.names)

    def index(self, name: str) -> int:
        """The node index of ``name``; a KeyError names it when it is not a node."""
        try:
            return self._index[name]
        except KeyError:
            raise KeyError(f"{name!r} is not a node of this hierarchy") from None

    def roots(self) -> list[int]:
        """Nodes without a parent (``entity.n.01`` for WordNet nouns), in index order."""
        has_parent = torch.zeros(self.num_nodes, dtype=torch.bool)
        has_parent[self.edges[:, 0]] = True
        return (~has_parent).nonzero().flatten().tolist()

    def __repr__(self) -> str:
        return (
            f"Hierarchy(num_nodes={self.num_nodes}, edges={self.edges.shape[0]}, "
            f"direct_edges={self.direct_edges.shape[0]})"
        )


# --------------------------------------------------------------------- closure


def _closure_lists(parents: list[list[int]]) -> list[list[int]]:
    """Ancestors (in no order) of every node of the DAG given by its parent lists (Kahn's order:
    a node's ancestors are the union of its parents and their ancestors)."""
    n = len(parents)
    children: list[list[int]] = [[] for _ in range(n)]
    pending = [len(p) for p in parents]
    for u, ps in enumerate(parents):
        for p in ps:
            children[p].append(u)
    ancestors: list[set[int] | None] = [None] * n
    ready = [u for u in range(n) if pending[u] == 0]
    done = 0
    while ready:
        u = ready.pop()
        done += 1
        acc: set[int] = set(parents[u])
        for p in parents[u]:
            acc |= ancestors[p]  # type: ignore[operator]
        ancestors[u] = acc
        for ch in children[u]:
            pending[ch] -= 1
            if pending[ch] == 0:
                ready.append(ch)
    if done < n:
        stuck = [u for u in range(n) if ancestors[u] is None]
        raise ValueError(
            f"the edges contain a cycle: {len(stuck)} nodes lie on or below one "
            f"(first node index {stuck[0]})"
        )
    return [list(a) for a in ancestors]  # type: ignore[arg-type]


def _pairs_tensor(lists: list[list[int]]) -> Tensor:
    """``(E, 2)`` pairs ``(u, v)`` for ``v`` in ``lists[u]``."""
    counts = torch.tensor([len(vs) for vs in lists], dtype=torch.long)
    cols = torch.tensor(list(itertools.chain.from_iterable(lists)), dtype=torch.long)
    rows = torch.repeat_interleave(torch.arange(len(lists)), counts)
    return torch.stack([rows, cols], 1) if cols.numel() else torch.zeros(0, 2, dtype=torch.long)


def _check_edges(edges: object, num_nodes: int | None, name: str = "edges") -> Tensor:
    if not isinstance(edges, Tensor) or edges.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"{name} must be an int64 tensor of shape (E, 2), got {type(edges)}")
    if edges.dim() != 2 or edges.shape[1] != 2:
        raise ValueError(f"{name} must have shape (E, 2), got {tuple(edges.shape)}")
    edges = edges.long()
    if edges.numel() and int(edges.min()) < 0:
        raise ValueError(f"{name} must hold node indices >= 0, got {int(edges.min())}")
    if num_nodes is not None and edges.numel() and int(edges.max()) >= num_nodes:
        raise ValueError(
            f"{name} must hold node indices < num_nodes = {num_nodes}, got {int(edges.max())}"
        )
    return edges


def transitive_closure(edges: Tensor, num_nodes: int | None = None) -> Tensor:
    """Transitive closure of a directed acyclic graph, without self loops.

    Args:
        edges: ``(E, 2)`` int64 pairs ``(child, parent)``; duplicates and self loops are
            ignored.
        num_nodes: ``N``. (default: ``None``, the largest index + 1)

    Returns:
        ``(E_c, 2)`` int64 pairs ``(child, ancestor)``, sorted, one per ancestor.

    Raises:
        ValueError: ``edges`` has a cycle (other than self loops) or an index out of range.

    Example:
        >>> transitive_closure(torch.tensor([[0, 1], [1, 2]])).tolist()
        [[0, 1], [0, 2], [1, 2]]
    """
    edges = _check_edges(edges, num_nodes)
    n = num_nodes if num_nodes is not None else (int(edges.max()) + 1 if edges.numel() else 0)
    parents: list[list[int]] = [[] for _ in range(n)]
    for u, v in set(map(tuple, edges.tolist())):
        if u != v:
            parents[u].append(v)
    return _pairs_tensor([sorted(a) for a in _closure_lists(parents)])


def _reduction(ancestors: list[list[int]]) -> list[list[int]]:
    """Transitive reduction of a closed DAG: v is a direct parent of u unless some other
    ancestor of u has v as an ancestor."""
    sets = [set(a) for a in ancestors]
    out = []
    for a in ancestors:
        implied: set[int] = set()
        for w in a:
            implied |= sets[w]
        out.append([v for v in a if v not in implied])
    return out


def _build(
    names: Sequence[str],
    parents: list[list[int]],
    keep: Iterable[int] | None = None,
    drop: Iterable[int] = (),
) -> Hierarchy:
    """Hierarchy of the DAG ``names``/``parents`` on the nodes ``keep`` (all when None), which
    must hold every node on a path between two of them (true of a subtree), then without
    ``drop``; renumbered in name order."""
    kept = sorted(range(len(names)) if keep is None else set(keep), key=names.__getitem__)
    new = {old: i for i, old in enumerate(kept)}
    sub = [[new[p] for p in parents[old] if p in new] for old in kept]
    ancestors = _closure_lists(sub)
    dropped = {new[old] for old in drop if old in new}
    final = [i for i in range(len(kept)) if i not in dropped]
    renum = {i: j for j, i in enumerate(final)}

    def restrict(lists: list[list[int]]) -> list[list[int]]:
        if not dropped:
            return [sorted(vs) for vs in lists]  # numbering unchanged
        return [sorted(renum[v] for v in lists[i] if v in renum) for i in final]

    return Hierarchy(
        names=[names[kept[i]] for i in final],
        edges=_pairs_tensor(restrict(ancestors)),
        direct_edges=_pairs_tensor(restrict(sub)),
    )


def hierarchy_from_edges(pairs: Iterable[tuple[str, str]], *, closure: bool = True) -> Hierarchy:
    """A :class:`Hierarchy` from ``(child, parent)`` name pairs.

    Args:
        pairs: ``(child, parent)`` names; duplicates and self loops are dropped.
        closure: the pairs are direct edges; compute their transitive closure. With ``False``
            the pairs must already be a closure (as Nickel and Kiela's ``noun_closure.tsv``):
            ``edges`` are the pairs and ``direct_edges`` their transitive reduction.
            (default: ``True``)

    Raises:
        ValueError: the pairs have a cycle, or ``closure=False`` and they are not transitively
            closed (the message gives a missing pair).

    Example:
        >>> hierarchy_from_edges([("a", "b"), ("b", "c"), ("a", "c")], closure=False)
        Hierarchy(num_nodes=3, edges=3, direct_edges=2)
    """
    names_set: set[str] = set()
    clean = set()
    for pair in pairs:
        if len(pair) != 2:
            raise ValueError(f"pairs must be (child, parent) tuples, got {pair!r}")
        u, v = str(pair[0]), str(pair[1])
        names_set.update((u, v))
        if u != v:
            clean.add((u, v))
    names = sorted(names_set)
    index = {name: i for i, name in enumerate(names)}
    given: list[list[int]] = [[] for _ in names]
    for u, v in clean:
        given[index[u]].append(index[v])
    if closure:
        return _build(names, given, None)
    ancestors = [sorted(a) for a in _closure_lists(given)]
    for u, a in enumerate(ancestors):
        if len(a) != len(given[u]):
            missing = sorted(set(a) - set(given[u]))[0]
            raise ValueError(
                f"closure=False needs transitively closed pairs, but ({names[u]!r}, "
                f"{names[missing]!r}) is implied and not listed; pass closure=True"
            )
    parents = _reduction(ancestors)
    return Hierarchy(names, _pairs_tensor(ancestors), _pairs_tensor(parents))


def load_edge_list(
    path: str | os.PathLike[str],
    *,
    closure: bool = True,
    delimiter: str | None = None,
    header: bool = False,
) -> Hierarchy:
    """Read a hierarchy from a text file of ``child<delimiter>parent`` lines.

    Blank lines and lines starting with ``#`` are skipped; columns after the second (such as
    the ``weight`` of Nickel and Kiela's CSV files) are ignored.

    Args:
        path: the file.
        closure: the lines are direct edges; compute the transitive closure. ``False``: the
            file already holds a closure (``noun_closure.tsv``, ``mammal_closure.csv``).
            (default: ``True``)
        delimiter: column separator. (default: ``None``: a tab if the first data line has
            one, else a comma if it has one, else runs of whitespace)
        header: the first non-comment line is a header (``id1,id2,weight``) and is skipped.
            (default: ``False``)

    Returns:
        A :class:`Hierarchy` (nodes sorted by name).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: a line has fewer than two columns (the message gives its number), the
            edges have a cycle, or ``closure=False`` and they are not closed.

    Example:
        >>> load_edge_list("my_hierarchy.tsv")  # doctest: +SKIP
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"edge list file not found: {path!r}")
    pairs = []
    sep = delimiter
    skip_header = header
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            line = line.rstrip("\r\n")
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            if skip_header:
                skip_header = False
                continue
            if sep is None:
                sep = "\t" if "\t" in line else ("," if "," in line else "")
            cols = [c.strip() for c in (line.split(sep) if sep else line.split())]
            if len(cols) < 2 or not cols[0] or not cols[1]:
                raise ValueError(
                    f"{path!r}, line {lineno}: expected 'child{sep or ' '}parent', got {line!r}"
                )
            pairs.append((cols[0], cols[1]))
    return hierarchy_from_edges(pairs, closure=closure)


# --------------------------------------------------------------------- WordNet


def find_wordnet_dir(path: str | os.PathLike[str] | None = None) -> str:
    """The folder holding WordNet's ``data.noun``: ``path``, else ``$WNHOME``, else
    :data:`DEFAULT_WORDNET_DIR`; a ``dict/`` subfolder (WordNet's own layout) is accepted.

    Raises:
        FileNotFoundError: no ``data.noun`` there; the message says how to install it.

    Example:
        >>> find_wordnet_dir()  # doctest: +SKIP
        '/usr/share/wordnet'
    """
    if path is not None and not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"wordnet_dir must be a str or an os.PathLike, got {type(path).__name__}")
    if path is not None:
        base, source = os.fspath(path), "wordnet_dir"
    elif os.environ.get("WNHOME"):
        base, source = os.environ["WNHOME"], "$WNHOME"
    else:
        base, source = DEFAULT_WORDNET_DIR, "the default folder"
    for folder in (base, os.path.join(base, "dict")):
        if os.path.isfile(os.path.join(folder, "data.noun")) and os.path.isfile(
            os.path.join(folder, "index.noun")
        ):
            return folder
    raise FileNotFoundError(
        f"WordNet 3.0 database not found: no data.noun and index.noun in {base!r} ({source}). "
        "On Debian or Ubuntu install it with `apt-get install wordnet-base` (files in "
        f"{DEFAULT_WORDNET_DIR}); elsewhere pass wordnet_dir= or set WNHOME to the folder "
        "holding data.noun and index.noun (WordNet 3.0's dict folder)"
    )


def _read_index(path: str) -> dict[str, list[str]]:
    senses: dict[str, list[str]] = {}
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            # The license header lines start with two spaces.
            if line.startswith("  ") or not line.strip():
                continue
            cols = line.split()
            try:
                count = int(cols[2])
            except (IndexError, ValueError):
                raise ValueError(f"{path!r}, line {lineno}: not an index line: {line!r}") from None
            senses[cols[0]] = cols[len(cols) - count :]
    return senses


def _read_data(path: str, instances: bool) -> tuple[list[str], list[str], list[list[str]]]:
    """Offsets, first words and is-a pointer targets (offsets) of the synsets of ``path``."""
    offsets: list[str] = []
    words: list[str] = []
    targets: list[list[str]] = []
    kinds = ("@", "@i") if instances else ("@",)
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if line.startswith("  ") or not line.strip():
                continue
            cols = line.split(" | ", 1)[0].split()
            try:
                w_cnt = int(cols[3], 16)
                at = 4 + 2 * w_cnt
                p_cnt = int(cols[at])
                pointers = cols[at + 1 : at + 1 + 4 * p_cnt]
                if len(pointers) != 4 * p_cnt:
                    raise ValueError
            except (IndexError, ValueError):
                raise ValueError(
                    f"{path!r}, line {lineno}: not a WordNet data line (synset {cols[:1]})"
                ) from None
            offsets.append(cols[0])
            words.append(cols[4])
            targets.append(
                [pointers[k + 1] for k in range(0, len(pointers), 4) if pointers[k] in kinds]
            )
    return offsets, words, targets


def load_wordnet_nouns(
    subtree: str | None = None,
    *,
    wordnet_dir: str | os.PathLike[str] | None = None,
    instance_hypernyms: bool = True,
    exclude: Sequence[str] = (),
) -> Hierarchy:
    """The WordNet 3.0 noun hierarchy (hypernym closure) or the subtree of one synset.

    Args:
        subtree: a synset name (``"mammal.n.01"``): keep it and every synset that has it
            among its ancestors, with the closure edges among them. (default: ``None``, all
            82,115 nouns)
        wordnet_dir: folder of ``data.noun`` and ``index.noun``. (default: ``None``:
            ``$WNHOME``, else ``/usr/share/wordnet``; see :func:`find_wordnet_dir`)
        instance_hypernyms: follow instance-hypernym pointers (``@i``, e.g. ``paris.n.01`` ->
            ``national_capital.n.01``) as well as hypernyms (``@``), as the paper does.
            (default: ``True``)
        exclude: synset names to drop from the result (their edges go with them; the closure
            of the others is computed before, so it may pass through them). (default: ``()``)

    Returns:
        A :class:`Hierarchy`: all nouns give 82,115 nodes, 743,241 closure edges and 84,427
        direct edges; ``"mammal.n.01"`` gives 1,182 nodes and 6,542 edges.

    Raises:
        FileNotFoundError: the database is not there (the message says how to install it).
        KeyError: ``subtree`` or a name of ``exclude`` is not a noun synset.
        ValueError: a line of the files is malformed, or the two files do not match (the
            message names the file, and the line or synset).

    Example:
        >>> mammals = load_wordnet_nouns("mammal.n.01")  # doctest: +SKIP
        >>> mammals.num_nodes, mammals.edges.shape  # doctest: +SKIP
        (1182, torch.Size([6542, 2]))
    """
    folder = find_wordnet_dir(wordnet_dir)
    senses = _read_index(os.path.join(folder, "index.noun"))
    data_path = os.path.join(folder, "data.noun")
    offsets, words, targets = _read_data(data_path, instance_hypernyms)
    position = {off: i for i, off in enumerate(offsets)}
    names = []
    for off, word in zip(offsets, words, strict=True):
        lemma = word.lower()
        if lemma not in senses or off not in senses[lemma]:
            raise ValueError(
                f"{data_path!r}: synset {off} ({word}) is missing from index.noun's senses of "
                f"{lemma!r}; data.noun and index.noun come from different WordNet versions?"
            )
        # NLTK's naming: sense number = rank of the synset among the lemma's senses.
        names.append(f"{lemma}.n.{senses[lemma].index(off) + 1:02d}")
    parents = []
    for off, ts in zip(offsets, targets, strict=True):
        try:
            parents.append(sorted({position[t] for t in ts}))
        except KeyError as err:
            raise ValueError(f"{data_path!r}: synset {off} points to unknown {err}") from None
    by_name = {name: i for i, name in enumerate(names)}

    def lookup(name: str, arg: str) -> int:
        if not isinstance(name, str):
            raise TypeError(f"{arg} must hold synset names (str), got {type(name).__name__}")
        if name not in by_name:
            raise KeyError(f"{arg}: {name!r} is not a noun synset of WordNet (e.g. 'mammal.n.01')")
        return by_name[name]

    dropped = [lookup(name, "exclude") for name in exclude]
    if subtree is None:
        return _build(names, parents, None, dropped)
    # The subtree: the synset and everything below it. Any path between two of its nodes
    # stays inside it, so its closure is the closure of the subgraph it induces.
    kids: list[list[int]] = [[] for _ in names]
    for u, ps in enumerate(parents):
        for p in ps:
            kids[p].append(u)
    top = lookup(subtree, "subtree")
    keep, stack = {top}, [top]
    while stack:
        for ch in kids[stack.pop()]:
            if ch not in keep:
                keep.add(ch)
                stack.append(ch)
    return _build(names, parents, keep, dropped)


def load_wordnet_mammals(wordnet_dir: str | os.PathLike[str] | None = None) -> Hierarchy:
    """The mammal closure of Nickel and Kiela's official code: 1,180 nodes, 6,540 edges.

    The ``mammal.n.01`` subtree of :func:`load_wordnet_nouns` without the leaves in
    :data:`MAMMAL_CLOSURE_EXCLUDE` (``tusker.n.01``, ``female_mammal.n.01``), as the official
    ``mammals_filter.txt`` does.

    Example:
        >>> load_wordnet_mammals()  # doctest: +SKIP
        Hierarchy(num_nodes=1180, edges=6540, direct_edges=1180)
    """
    return load_wordnet_nouns(
        "mammal.n.01", wordnet_dir=wordnet_dir, exclude=MAMMAL_CLOSURE_EXCLUDE
    )


__all__ = [
    "DEFAULT_WORDNET_DIR",
    "MAMMAL_CLOSURE_EXCLUDE",
    "Hierarchy",
    "hierarchy_from_edges",
    "load_edge_list",
    "load_wordnet_mammals",
    "load_wordnet_nouns",
    "find_wordnet_dir",
    "transitive_closure",
]
