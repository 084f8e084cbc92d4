import os
import shutil

import pytest
import torch

from geolayers.datasets.musae import (
    FACEBOOK_CLASSES,
    TWITCH_CLASSES,
    load_musae_facebook,
    load_musae_twitch,
)

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE = os.path.join(HERE, "fixtures", "musae")
REPO_ROOT = os.path.dirname(os.path.dirname(HERE))
REAL = os.path.join(REPO_ROOT, "..", "shared", "data", "musae")
has_real = pytest.mark.skipif(
    not os.path.isfile(os.path.join(REAL, "facebook_edges.csv")),
    reason="real MUSAE data not found at ../shared/data/musae",
)


def edge_set(edge_index):
    return set(map(tuple, edge_index.t().tolist()))


def copy_fixture(tmp_path, names, rename=lambda n: n):
    for name in names:
        shutil.copy(os.path.join(FIXTURE, name), tmp_path / rename(name))
    return str(tmp_path)


def test_facebook_fixture():
    data = load_musae_facebook(FIXTURE)
    assert data.num_nodes == 8
    assert data.class_names == list(FACEBOOK_CLASSES)
    # Target rows are not in id order: labels must land on their ids.
    names = ["tvshow", "company", "politician", "government"] + [
        "government", "company", "tvshow", "politician",
    ]  # fmt: skip
    assert data.y.dtype == torch.int64
    assert data.y.tolist() == [FACEBOOK_CLASSES.index(n) for n in names]
    # Both directions, no self loop (3, 3), the duplicate (0, 1)/(1, 0) kept once; 7 isolated.
    pairs = {(0, 1), (1, 2), (2, 3), (0, 4), (4, 5), (5, 6), (4, 6)}
    assert edge_set(data.edge_index) == pairs | {(v, u) for u, v in pairs}
    assert data.edge_index.size(1) == 14 and data.edge_index.dtype == torch.int64
    assert data.x.is_sparse and data.x.dtype == torch.float32 and data.x.shape == (8, 6)
    expected = torch.zeros(8, 6)
    for node, ids in {0: [0, 5], 1: [1, 2], 2: [2], 3: [3, 4, 0], 5: [5], 6: [1, 3]}.items():
        expected[node, ids] = 1.0
    # Node 0 lists feature 5 twice: still a 0/1 matrix.
    assert torch.equal(data.x.to_dense(), expected)
    assert torch.equal(load_musae_facebook(FIXTURE, dense=True).x, expected)


def test_num_features_override():
    assert load_musae_facebook(FIXTURE, num_features=10).x.shape == (8, 10)
    with pytest.raises(
        ValueError, match=r"num_features must exceed the largest feature id .*\(5\)"
    ):
        load_musae_facebook(FIXTURE, num_features=5)
    with pytest.raises(ValueError, match="num_features must be a positive int"):
        load_musae_facebook(FIXTURE, num_features=0)


def test_twitch_fixture():
    data = load_musae_twitch(FIXTURE, "ENGB")
    assert data.num_nodes == 5
    assert data.class_names == list(TWITCH_CLASSES)
    # new_id (not the first column) is the node id.
    assert data.y.tolist() == [1, 0, 0, 1, 1]
    pairs = {(0, 1), (1, 2), (0, 2), (1, 3)}
    assert edge_set(data.edge_index) == pairs | {(v, u) for u, v in pairs}
    assert data.x.shape == (5, 4)
    assert data.x.to_dense()[2].tolist() == [0.0, 0.0, 1.0, 1.0]


def test_missing_file_names_expected_path(tmp_path):
    root = copy_fixture(tmp_path, ["facebook_target.csv", "facebook_edges.csv"])
    with pytest.raises(FileNotFoundError, match=r"facebook_features\.json"):
        load_musae_facebook(root)
    with pytest.raises(FileNotFoundError, match=r"ENGB_target\.csv"):
        load_musae_twitch(root)
    with pytest.raises(FileNotFoundError, match="MUSAE root folder not found"):
        load_musae_facebook(str(tmp_path / "absent"))


def test_repository_file_names_accepted(tmp_path):
    names = ["facebook_target.csv", "facebook_edges.csv", "facebook_features.json"]
    root = copy_fixture(tmp_path, names, rename=lambda n: "musae_" + n)
    assert torch.equal(load_musae_facebook(root).y, load_musae_facebook(FIXTURE).y)


def test_bad_arguments():
    with pytest.raises(TypeError, match="root must be a str"):
        load_musae_facebook(3)
    with pytest.raises(ValueError, match=r"country must be one of .*'ENGB'.*got 'UK'"):
        load_musae_twitch(FIXTURE, "UK")


def test_bad_file_contents(tmp_path):
    root = copy_fixture(tmp_path, ["facebook_edges.csv", "facebook_features.json"])
    target = tmp_path / "facebook_target.csv"
    target.write_text("id,facebook_id,page_name,page_type\n0,1,a,tvshow\n1,2,b,band\n")
    with pytest.raises(ValueError, match=r"page_type must be one of .*\['band'\]"):
        load_musae_facebook(root)
    target.write_text("id,name\n0,a\n")
    with pytest.raises(ValueError, match="no column 'page_type'"):
        load_musae_facebook(root)
    # Two valid nodes, but the edge file names node 6.
    target.write_text("id,facebook_id,page_name,page_type\n0,1,a,tvshow\n1,2,b,company\n")
    with pytest.raises(ValueError, match=r"node ids must lie in 0\.\.1"):
        load_musae_facebook(root)


@has_real
def test_real_facebook_counts():
    with open(os.path.join(REAL, "facebook_edges.csv")) as fh:
        lines = fh.read().splitlines()[1:]
    pairs = [tuple(map(int, line.split(","))) for line in lines]
    self_loops = sum(u == v for u, v in pairs)
    assert len(pairs) == 171_002
    data = load_musae_facebook(REAL)
    assert data.num_nodes == 22_470 and data.y.shape == (22_470,)
    assert data.class_names == list(FACEBOOK_CLASSES)
    assert torch.bincount(data.y).tolist() == [6495, 6880, 5768, 3327]
    # The csv lists each undirected pair once; self loops are dropped, the rest doubled.
    assert data.edge_index.size(1) == 2 * (171_002 - self_loops)
    assert not bool((data.edge_index[0] == data.edge_index[1]).any())
    assert data.x.shape == (22_470, 4714) and data.x._nnz() == 314_583


@has_real
def test_real_twitch_counts():
    data = load_musae_twitch(REAL, "ENGB")
    assert data.num_nodes == 7126
    assert data.edge_index.size(1) == 2 * 35_324
    assert torch.bincount(data.y).tolist() == [3238, 3888]
