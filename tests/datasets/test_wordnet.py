import os
import shutil

import pytest
import torch

from geolayers.datasets.wordnet import (
    DEFAULT_WORDNET_DIR,
    Hierarchy,
    find_wordnet_dir,
    hierarchy_from_edges,
    load_edge_list,
    load_wordnet_mammals,
    load_wordnet_nouns,
    transitive_closure,
)

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE = os.path.join(HERE, "fixtures", "wordnet")
has_real = pytest.mark.skipif(
    not os.path.isfile(os.path.join(DEFAULT_WORDNET_DIR, "data.noun")),
    reason="WordNet 3.0 not installed (apt-get install wordnet-base)",
)

# The fixture's is-a pointers (child -> parents): hypernyms, and the instance hypernyms of
# lassie.n.01 (-> dog.n.01) and pal.n.01 (-> kennel_star.n.01, a kind of lassie.n.01).
DIRECT = {
    "animal.n.01": ["entity.n.01"],
    "person.n.01": ["entity.n.01"],
    "mammal.n.01": ["animal.n.01"],
    "domestic_animal.n.01": ["animal.n.01"],
    "canine.n.01": ["entity.n.01"],
    "canine.n.02": ["mammal.n.01"],
    "dog.n.01": ["canine.n.02", "domestic_animal.n.01"],
    "dog.n.02": ["person.n.01"],
    "puppy.n.01": ["dog.n.01"],
    "cat.n.01": ["mammal.n.01"],
    "lassie.n.01": ["dog.n.01"],
    "kennel_star.n.01": ["lassie.n.01"],
    "pal.n.01": ["kennel_star.n.01"],
}


def named(h: Hierarchy, edges: torch.Tensor) -> set[tuple[str, str]]:
    return {(h.names[u], h.names[v]) for u, v in edges.tolist()}


def brute_closure(direct: dict[str, list[str]]) -> set[tuple[str, str]]:
    pairs = set()
    for start in direct:
        stack = list(direct[start])
        while stack:
            v = stack.pop()
            if (start, v) not in pairs:
                pairs.add((start, v))
                stack.extend(direct.get(v, []))
    return pairs


def test_fixture_nouns_counts_names_closure():
    h = load_wordnet_nouns(wordnet_dir=FIXTURE)
    assert h.num_nodes == 14 and h.edges.shape == (47, 2) and h.direct_edges.shape == (14, 2)
    assert h.names == sorted(h.names)
    assert h.edges.dtype == torch.int64
    # Sense numbers follow index.noun's order, not data.noun's: the tooth (offset 00003700,
    # after the animal) is canine.n.01; the second synset of "dog" (first word "dog") is
    # dog.n.02; capitals are lowered (Lassie, Pal).
    assert h.names[h.index("canine.n.01")] == "canine.n.01"
    assert named(h, h.direct_edges) == {(c, p) for c, ps in DIRECT.items() for p in ps}
    assert ("canine.n.01", "entity.n.01") in named(h, h.direct_edges)
    assert ("dog.n.02", "person.n.01") in named(h, h.direct_edges)
    closure = named(h, h.edges)
    assert closure == brute_closure(DIRECT)
    # A chain instance -> hypernym -> instance: pal.n.01 is below dog.n.01 and entity.n.01
    # (the official NLTK script would stop at lassie.n.01).
    assert {("pal.n.01", "dog.n.01"), ("pal.n.01", "entity.n.01")} <= closure
    # Sorted, unique, no self loops.
    key = h.edges[:, 0] * h.num_nodes + h.edges[:, 1]
    assert torch.equal(key, key.unique()) and not (h.edges[:, 0] == h.edges[:, 1]).any()
    assert h.roots() == [h.index("entity.n.01")]
    assert repr(h) == "Hierarchy(num_nodes=14, edges=47, direct_edges=14)"


def test_fixture_without_instances_subtree_exclude():
    h = load_wordnet_nouns(wordnet_dir=FIXTURE, instance_hypernyms=False)
    assert h.edges.shape == (27, 2) and h.direct_edges.shape == (12, 2)
    # Without instance pointers lassie.n.01 and pal.n.01 are roots.
    assert sorted(h.names[r] for r in h.roots()) == ["entity.n.01", "lassie.n.01", "pal.n.01"]

    m = load_wordnet_nouns("mammal.n.01", wordnet_dir=FIXTURE)
    names = {"mammal.n.01", "canine.n.02", "dog.n.01", "puppy.n.01", "cat.n.01"}
    names |= {"lassie.n.01", "kennel_star.n.01", "pal.n.01"}
    assert set(m.names) == names and m.edges.shape == (19, 2)
    expected = {(u, v) for u, v in brute_closure(DIRECT) if u in names and v in names}
    assert named(m, m.edges) == expected
    # dog.n.01 -> domestic_animal.n.01 leaves the subtree with domestic_animal.n.01.
    assert named(m, m.direct_edges) == {
        (c, p) for c, ps in DIRECT.items() for p in ps if c in names and p in names
    }

    # Excluded synsets go, the closure through them stays (pal -> lassie via kennel_star).
    x = load_wordnet_nouns("mammal.n.01", wordnet_dir=FIXTURE, exclude=["kennel_star.n.01"])
    assert "kennel_star.n.01" not in x.names and ("pal.n.01", "lassie.n.01") in named(x, x.edges)
    assert x.edges.shape == (19 - 4 - 1, 2)


def test_fixture_errors_and_folder_lookup(tmp_path, monkeypatch):
    with pytest.raises(KeyError, match="'wolf.n.01' is not a noun synset"):
        load_wordnet_nouns("wolf.n.01", wordnet_dir=FIXTURE)
    with pytest.raises(KeyError, match="exclude: 'wolf.n.01'"):
        load_wordnet_nouns(wordnet_dir=FIXTURE, exclude=["wolf.n.01"])
    with pytest.raises(FileNotFoundError, match="apt-get install wordnet-base"):
        load_wordnet_nouns(wordnet_dir=tmp_path)
    with pytest.raises(TypeError, match="wordnet_dir must be a str"):
        find_wordnet_dir(3)
    # WordNet's own layout ($WNHOME/dict) and the WNHOME variable.
    shutil.copytree(FIXTURE, tmp_path / "dict")
    monkeypatch.setenv("WNHOME", str(tmp_path))
    assert find_wordnet_dir() == str(tmp_path / "dict")
    assert load_wordnet_nouns().num_nodes == 14
    monkeypatch.setenv("WNHOME", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match=r"\$WNHOME"):
        find_wordnet_dir()
    # A corrupt line names its file and line.
    bad = tmp_path / "bad"
    shutil.copytree(FIXTURE, bad)
    with open(bad / "data.noun", "a") as fh:
        fh.write("00009999 05 n zz broken\n")
    with pytest.raises(ValueError, match=r"data.noun', line 19"):
        load_wordnet_nouns(wordnet_dir=bad)


def test_transitive_closure_and_cycles():
    edges = torch.tensor([[0, 1], [1, 2], [3, 2], [0, 1], [2, 2]])
    assert transitive_closure(edges).tolist() == [[0, 1], [0, 2], [1, 2], [3, 2]]
    assert transitive_closure(torch.zeros(0, 2, dtype=torch.long), 3).shape == (0, 2)
    with pytest.raises(ValueError, match="cycle"):
        transitive_closure(torch.tensor([[0, 1], [1, 2], [2, 0]]))
    with pytest.raises(ValueError, match="num_nodes = 2"):
        transitive_closure(torch.tensor([[0, 2]]), 2)
    with pytest.raises(ValueError, match=r"shape \(E, 2\)"):
        transitive_closure(torch.tensor([0, 1]))


def test_hierarchy_from_edges_closed_and_reduction():
    pairs = [("a", "b"), ("b", "c"), ("a", "c"), ("d", "c"), ("a", "a")]
    h = hierarchy_from_edges(pairs, closure=False)
    assert h.names == ["a", "b", "c", "d"]
    assert named(h, h.edges) == {("a", "b"), ("b", "c"), ("a", "c"), ("d", "c")}
    # a -> c is implied by a -> b -> c: not a direct edge.
    assert named(h, h.direct_edges) == {("a", "b"), ("b", "c"), ("d", "c")}
    with pytest.raises(ValueError, match=r"\('a', 'c'\) is implied and not listed"):
        hierarchy_from_edges([("a", "b"), ("b", "c")], closure=False)
    with pytest.raises(KeyError, match="'z' is not a node"):
        h.index("z")


def test_load_edge_list_formats(tmp_path):
    tsv = tmp_path / "h.tsv"
    tsv.write_text("# my hierarchy\nbeagle\tdog\n\ndog\tmammal\ncat\tmammal\n")
    h = load_edge_list(tsv)
    assert h.names == ["beagle", "cat", "dog", "mammal"]
    assert named(h, h.edges) == {
        ("beagle", "dog"), ("beagle", "mammal"), ("dog", "mammal"), ("cat", "mammal"),
    }  # fmt: skip
    # Nickel and Kiela's CSV: header, a weight column, already a closure.
    csv = tmp_path / "closure.csv"
    csv.write_text("id1,id2,weight\nbeagle,dog,1\nbeagle,mammal,1\ndog,mammal,1\n")
    c = load_edge_list(csv, closure=False, header=True)
    assert c.edges.shape == (3, 2) and c.direct_edges.shape == (2, 2)
    spaces = tmp_path / "h.txt"
    spaces.write_text("beagle  dog\ndog mammal\n")
    assert load_edge_list(spaces).edges.shape == (3, 2)
    bad = tmp_path / "bad.tsv"
    bad.write_text("beagle\tdog\nlonely\n")
    with pytest.raises(ValueError, match="line 2"):
        load_edge_list(bad)
    with pytest.raises(FileNotFoundError, match="edge list file not found"):
        load_edge_list(tmp_path / "missing.tsv")


@pytest.mark.slow
@has_real
def test_real_wordnet_counts():
    nouns = load_wordnet_nouns()
    # The paper's figures (Nickel and Kiela 2017, section 4.1).
    assert nouns.num_nodes == 82_115 and nouns.edges.shape == (743_241, 2)
    assert nouns.direct_edges.shape == (84_427, 2)
    assert [nouns.names[r] for r in nouns.roots()] == ["entity.n.01"]
    i = nouns.index
    key = nouns.edges[:, 0] * nouns.num_nodes + nouns.edges[:, 1]
    pairs = [("dog.n.01", "mammal.n.01"), ("paris.n.01", "city.n.01"), ("son.n.02", "god.n.01")]
    # Paris through an instance pointer, son.n.02 through an instance pointer after a hypernym.
    wanted = torch.tensor([i(u) * nouns.num_nodes + i(v) for u, v in pairs])
    assert torch.isin(wanted, key).all()
    for name in ("abstraction.n.06", "whole.n.02", "cub.n.03", "racer.n.03"):
        i(name)  # names of the official mammals_filter.txt exist
    # The mammal.n.01 subtree, from the noun closure: 1,182 nodes and 6,542 edges.
    below = nouns.edges[nouns.edges[:, 1] == i("mammal.n.01"), 0]
    inside = torch.zeros(nouns.num_nodes, dtype=torch.bool)
    inside[below] = True
    inside[i("mammal.n.01")] = True
    kept = inside[nouns.edges[:, 0]] & inside[nouns.edges[:, 1]]
    assert (int(inside.sum()), int(kept.sum())) == (1_182, 6_542)
    mammals = load_wordnet_mammals()
    assert (mammals.num_nodes, mammals.edges.shape[0]) == (1_180, 6_540)
    assert "tusker.n.01" not in mammals.names
