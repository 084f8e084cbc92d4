import pytest

EXAMPLES = [
    "deepsets_digit_sum",
    "soft_equivariance",
    "fie_facebook",
    "hamgnn_facebook",
    "hgcn_facebook",
    "hyperbolic_hierarchy_classifier",
    "latent_stitching",
    "musae_facebook",
    "nw_domain_shift",
    "object_discovery",
    "poincare_wordnet",
    "pointcloud_canonical",
    "rotated_digits",
]


@pytest.mark.parametrize("name", EXAMPLES)
def test_help_lists_the_common_flags(run_example, name):
    proc = run_example(name, "--help", timeout=60)
    assert proc.returncode == 0, proc.stderr
    for flag in ("--smoke", "--no-progress", "--seed", "--json", "--threads"):
        assert flag in proc.stdout
