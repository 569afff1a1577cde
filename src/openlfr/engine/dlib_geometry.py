"""Bit-exact ports of the small dlib geometry routines that landmarks and face chips depend on.

dlib (built without LAPACK or FMA, as in ``dlib-bin``) fits transforms with its own SVD
(``svd4``, the Handbook Algol translation in ``dlib/matrix/matrix_la.h``), a pseudo-inverse built
on it, and Umeyama's similarity fit (``dlib/geometry/point_transforms.h``). Sampling positions,
and through bilinear truncation whole chip pixels, depend on the last bit of these doubles, so
the arithmetic below follows dlib's operation order exactly, on Python floats (IEEE doubles, the
same libm for sin/cos/atan2).

Transforms are ``(m, b)`` pairs: ``m`` a 2x2 nested tuple, ``b`` a 2-tuple; ``p -> m @ p + b``.
"""

from __future__ import annotations

import math
import sys
from functools import lru_cache

_EPS = sys.float_info.epsilon
_TINY = sys.float_info.min

Affine = tuple[tuple[tuple[float, float], tuple[float, float]], tuple[float, float]]


def svd4(a: list[list[float]]) -> tuple[list[list[float]], list[float], list[list[float]]]:
    """dlib's ``svd4(SVD_SKINNY_U, true, a, u, q, v)`` for an m x n matrix with m >= n.

    Returns ``(u, q, v)`` with ``a == u @ diag(q) @ v.T`` (u is m x n).
    """
    m = len(a)
    n = len(a[0])
    if m < n:
        raise ValueError("svd4 needs rows >= cols")
    sqrt = math.sqrt
    eps = _EPS
    tol = _TINY / eps
    u = [[float(x) for x in row] for row in a]
    q = [0.0] * n
    e = [0.0] * n
    v = [[0.0] * n for _ in range(n)]
    unc = n  # skinny u
    l = 0

    # Householder's reduction to bidiagonal form.
    g = x = 0.0
    for i in range(n):
        e[i] = g
        s = 0.0
        l = i + 1
        for j in range(i, m):
            s += u[j][i] * u[j][i]
        if s < tol:
            g = 0.0
        else:
            f = u[i][i]
            g = sqrt(s) if f < 0 else -sqrt(s)
            h = f * g - s
            u[i][i] = f - g
            for j in range(l, n):
                s = 0.0
                for k in range(i, m):
                    s += u[k][i] * u[k][j]
                f = s / h
                for k in range(i, m):
                    u[k][j] += f * u[k][i]
        q[i] = g
        s = 0.0
        for j in range(l, n):
            s += u[i][j] * u[i][j]
        if s < tol:
            g = 0.0
        else:
            f = u[i][i + 1]
            g = sqrt(s) if f < 0 else -sqrt(s)
            h = f * g - s
            u[i][i + 1] = f - g
            for j in range(l, n):
                e[j] = u[i][j] / h
            for j in range(l, m):
                s = 0.0
                for k in range(l, n):
                    s += u[j][k] * u[i][k]
                for k in range(l, n):
                    u[j][k] += s * e[k]
        y = abs(q[i]) + abs(e[i])
        if y > x:
            x = y

    # Accumulation of right-hand transformations.
    for i in range(n - 1, -1, -1):
        if g != 0.0:
            h = u[i][i + 1] * g
            for j in range(l, n):
                v[j][i] = u[i][j] / h
            for j in range(l, n):
                s = 0.0
                for k in range(l, n):
                    s += u[i][k] * v[k][j]
                for k in range(l, n):
                    v[k][j] += s * v[k][i]
        for j in range(l, n):
            v[i][j] = v[j][i] = 0.0
        v[i][i] = 1.0
        g = e[i]
        l = i

    # Accumulation of left-hand transformations (rows n..m-1 of a skinny u need no set-up).
    for i in range(n - 1, -1, -1):
        l = i + 1
        g = q[i]
        for j in range(l, unc):
            u[i][j] = 0.0
        if g != 0.0:
            h = u[i][i] * g
            for j in range(l, unc):
                s = 0.0
                for k in range(l, m):
                    s += u[k][i] * u[k][j]
                f = s / h
                for k in range(i, m):
                    u[k][j] += f * u[k][i]
            for j in range(i, m):
                u[j][i] /= g
        else:
            for j in range(i, m):
                u[j][i] = 0.0
        u[i][i] += 1.0

    # Diagonalisation of the bidiagonal form.
    eps *= x
    c = s = f = h = y = z = 0.0
    for k in range(n - 1, -1, -1):
        it = 0
        while True:  # test_f_splitting
            cancel = False
            l = k
            while l >= 0:
                if abs(e[l]) <= eps:
                    break
                if abs(q[l - 1]) <= eps:
                    cancel = True
                    break
                l -= 1
            if cancel:
                c = 0.0
                s = 1.0
                l1 = l - 1
                for i in range(l, k + 1):
                    f = s * e[i]
                    e[i] *= c
                    if abs(f) <= eps:
                        break
                    g = q[i]
                    h = sqrt(f * f + g * g)
                    q[i] = h
                    c = g / h
                    s = -f / h
                    for j in range(m):
                        y = u[j][l1]
                        z = u[j][i]
                        u[j][l1] = y * c + z * s
                        u[j][i] = -y * s + z * c
            # test_f_convergence
            z = q[k]
            if l == k:
                if z < 0.0:
                    q[k] = -z
                    for j in range(n):
                        v[j][k] = -v[j][k]
                break
            it += 1
            if it > 300:
                raise ArithmeticError("svd4 did not converge")
            x = q[l]
            y = q[k - 1]
            g = e[k - 1]
            h = e[k]
            f = ((y - z) * (y + z) + (g - h) * (g + h)) / (2 * h * y)
            g = sqrt(f * f + 1.0)
            f = ((x - z) * (x + z) + h * (y / ((f - g) if f < 0 else (f + g)) - h)) / x
            c = s = 1.0
            for i in range(l + 1, k + 1):
                g = e[i]
                y = q[i]
                h = s * g
                g *= c
                z = sqrt(f * f + h * h)
                e[i - 1] = z
                c = f / z
                s = h / z
                f = x * c + g * s
                g = -x * s + g * c
                h = y * s
                y *= c
                for j in range(n):
                    x = v[j][i - 1]
                    z = v[j][i]
                    v[j][i - 1] = x * c + z * s
                    v[j][i] = -x * s + z * c
                z = sqrt(f * f + h * h)
                q[i - 1] = z
                if z != 0:
                    c = f / z
                    s = h / z
                f = c * g + s * y
                x = -s * g + c * y
                for j in range(m):
                    y = u[j][i - 1]
                    z = u[j][i]
                    u[j][i - 1] = y * c + z * s
                    u[j][i] = -y * s + z * c
            e[l] = 0.0
            e[k] = f
            q[k] = x
    return u, q, v


def _mat_mul(a: list[list[float]], b: list[list[float]]) -> list[list[float]]:
    """dlib's small-matrix product: each element summed left to right."""
    inner = len(b)
    cols = len(b[0])
    out = []
    for row in a:
        out_row = []
        for j in range(cols):
            acc = row[0] * b[0][j]
            for k in range(1, inner):
                acc += row[k] * b[k][j]
            out_row.append(acc)
        out.append(out_row)
    return out


def pinv(a: list[list[float]]) -> list[list[float]]:
    """dlib's ``pinv(m)`` (default tolerance) for a small dense matrix."""
    nr, nc = len(a), len(a[0])
    if nc > nr:
        t = [list(col) for col in zip(*a)]
        return [list(col) for col in zip(*pinv(t))]
    u, w, v = svd4(a)
    eps = _EPS * max(nr, nc) * max(w)
    rw = [(1.0 / x) if (x >= eps or x <= -eps) and x != 0 else 0.0 for x in w]
    vs = [[v[r][c] * rw[c] for c in range(nc)] for r in range(nc)]
    ut = [list(col) for col in zip(*u)]
    return _mat_mul(vs, ut)


@lru_cache(maxsize=64)
def _pinv_of_points(frm: tuple[tuple[float, float], ...]) -> list[list[float]]:
    return pinv([[float(x) for x, _ in frm], [float(y) for _, y in frm], [1.0] * len(frm)])


def find_affine_transform(frm: list[tuple[float, float]], to: list[tuple[float, float]]) -> Affine:
    """dlib's ``find_affine_transform``: ``m = Q * pinv(P)``."""
    pi = _pinv_of_points(tuple((float(x), float(y)) for x, y in frm))
    q = [[float(x) for x, _ in to], [float(y) for _, y in to]]
    mm = _mat_mul(q, pi)
    return ((mm[0][0], mm[0][1]), (mm[1][0], mm[1][1])), (mm[0][2], mm[1][2])


def find_similarity_transform(frm: list[tuple[float, float]], to: list[tuple[float, float]]) -> Affine:
    """dlib's ``find_similarity_transform`` (Umeyama, equations 34-43), in dlib's operation order."""
    n = len(frm)
    mfx = mfy = mtx = mty = 0.0
    for (fx, fy), (tx, ty) in zip(frm, to):
        mfx += fx
        mfy += fy
        mtx += tx
        mty += ty
    nf = float(n)
    mfx /= nf
    mfy /= nf
    mtx /= nf
    mty /= nf
    sigma_from = 0.0
    c00 = c01 = c10 = c11 = 0.0
    for (fx, fy), (tx, ty) in zip(frm, to):
        dfx = fx - mfx
        dfy = fy - mfy
        dtx = tx - mtx
        dty = ty - mty
        sigma_from += dfx * dfx + dfy * dfy
        c00 += dtx * dfx
        c01 += dtx * dfy
        c10 += dty * dfx
        c11 += dty * dfy
    sigma_from /= nf
    inv_n = 1.0 / nf  # dlib's matrix /= scalar multiplies by the reciprocal
    c00 *= inv_n
    c01 *= inv_n
    c10 *= inv_n
    c11 *= inv_n

    u, d, v = svd4([[c00, c01], [c10, c11]])
    s0 = s1 = 1.0
    det_cov = c00 * c11 - c01 * c10
    if det_cov < 0 or (
        det_cov == 0
        and (u[0][0] * u[1][1] - u[0][1] * u[1][0]) * (v[0][0] * v[1][1] - v[0][1] * v[1][0]) < 0
    ):
        if d[1] < d[0]:
            s1 = -1.0
        else:
            s0 = -1.0
    us = [[u[0][0] * s0 + u[0][1] * 0.0, u[0][0] * 0.0 + u[0][1] * s1],
          [u[1][0] * s0 + u[1][1] * 0.0, u[1][0] * 0.0 + u[1][1] * s1]]
    r = [[us[i][0] * v[j][0] + us[i][1] * v[j][1] for j in range(2)] for i in range(2)]
    c = 1.0
    if sigma_from != 0:
        c = 1.0 / sigma_from * ((d[0] * s0 + 0.0) + (d[1] * s1 + 0.0))
    # dlib percolates the scalar out of the product: (r * mean_from) * c.
    tx = mtx - (r[0][0] * mfx + r[0][1] * mfy) * c
    ty = mty - (r[1][0] * mfx + r[1][1] * mfy) * c
    return ((r[0][0] * c, r[0][1] * c), (r[1][0] * c, r[1][1] * c)), (tx, ty)


def apply(t: Affine, x: float, y: float) -> tuple[float, float]:
    """``m * p + b`` as dlib's ``point_transform_affine`` evaluates it."""
    (m00, m01), (m10, m11) = t[0]
    return (m00 * x + m01 * y) + t[1][0], (m10 * x + m11 * y) + t[1][1]


def rotate_point(center: tuple[float, float], p: tuple[float, float], angle: float) -> tuple[float, float]:
    """dlib's ``rotate_point<double>(center, p, angle)``."""
    sin_a = math.sin(angle)
    cos_a = math.cos(angle)
    dx = p[0] - center[0]
    dy = p[1] - center[1]
    return (cos_a * dx - sin_a * dy) + center[0], (sin_a * dx + cos_a * dy) + center[1]


def round_half_up(v: float) -> int:
    """dlib's float -> integer point conversion: ``floor(v + 0.5)``."""
    return int(math.floor(v + 0.5))
