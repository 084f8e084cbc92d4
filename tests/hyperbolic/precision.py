"""What the Poincare and Lorentz precision tests share: 50-digit arithmetic, tolerances, test
points at the issue's distances from the boundary, and the relative error against mpmath."""

import math

import mpmath
import torch

mpmath.mp.dps = 50
TOL = {torch.float64: 1e-9, torch.float32: 1e-4}
# Distance to the boundary of the points of the precision tests, per dtype (issue 3).
EDGE = {torch.float64: 1e-5, torch.float32: 1e-3}
CURVATURES = [1.0, 0.3]


def mp_vec(t):
    return [mpmath.mpf(float(v)) for v in t.double().tolist()]


def mp_norm(a):
    return mpmath.sqrt(mpmath.fsum(u * u for u in a))


def rel_err(out, ref):
    """max over rows of |out - ref| / |ref| (vectors) or |out - ref| / |ref| (scalars)."""
    worst = mpmath.mpf(0)
    for o, r in zip(out, ref, strict=True):
        o, r = (o if isinstance(o, list) else [o]), (r if isinstance(r, list) else [r])
        diff = mp_norm([mpmath.mpf(float(a)) - b for a, b in zip(o, r, strict=True)])
        worst = max(worst, diff / max(mp_norm(r), mpmath.mpf(10) ** -30))
    return float(worst)


def ball_points(n, d, dtype, c, seed, edge=True):
    """n random float64 points of the ball: half well inside (norm up to 0.9/sqrt c), half at
    (1 - EDGE[dtype])/sqrt c."""
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(n, d, generator=g, dtype=torch.float64)
    u = u / u.norm(dim=-1, keepdim=True)
    r = 0.9 * torch.rand(n, 1, generator=g, dtype=torch.float64)
    if edge:
        r[n // 2 :] = 1 - EDGE[dtype]
    return u * r / math.sqrt(c)
