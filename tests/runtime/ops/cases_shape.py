"""The case table, shape ops."""

from __future__ import annotations

import numpy as np

from .common import case, rand

# -- shape ops -------------------------------------------------------------------------------
_sx = rand(70, (2, 3, 4))
for name, shape, expect in (
    ("minus1", [-1, 4], (6, 4)),
    ("zero", [0, -1], (2, 12)),
    ("zero-mid", [2, 0, 2, 2], (2, 3, 2, 2)),
    ("flat", [-1], (24,)),
    ("same", [2, 3, 4], (2, 3, 4)),
    ("add-dims", [1, 2, 1, 12], (1, 2, 1, 12)),
):
    case(
        f"Reshape-{name}",
        "Reshape",
        {},
        [_sx, np.array(shape, np.int64)],
        lambda x, s, expect=expect: [np.array(x.ravel().tolist(), dtype=x.dtype).reshape(expect)],
        "exact",
        constants=(1,),
    )
case(
    "Reshape-allowzero",
    "Reshape",
    {"allowzero": 1},
    [np.zeros((0, 3), np.float32), np.array([3, 0], np.int64)],
    lambda x, s: [np.zeros((3, 0), np.float32)],
    "exact",
    constants=(1,),
)
case(
    "Reshape-int64-data",
    "Reshape",
    {},
    [np.arange(6, dtype=np.int64), np.array([3, -1], np.int64)],
    lambda x, s: [np.array([[0, 1], [2, 3], [4, 5]], np.int64)],
    "exact",
    constants=(1,),
)
for axis in (0, 1, 2, 3, -1, -3):
    x4 = rand(71, (2, 3, 4, 5))
    case(
        f"Flatten-axis{axis}",
        "Flatten",
        {"axis": axis},
        [x4],
        lambda x, axis=axis: [
            x.reshape(int(np.prod(x.shape[: axis % 4 if axis < 0 else axis])), -1)
        ],
        "exact",
    )
case("Flatten-default", "Flatten", {}, [rand(72, (2, 3, 2))], lambda x: [x.reshape(2, 6)], "exact")
for perm in (None, [0, 2, 1, 3], [3, 1, 0, 2]):
    x4 = rand(73, (2, 3, 4, 5))

    def _ref_t(x, perm=perm):
        p = perm if perm is not None else list(range(x.ndim))[::-1]
        out = np.empty(tuple(x.shape[i] for i in p), x.dtype)
        for idx in np.ndindex(*x.shape):
            out[tuple(idx[i] for i in p)] = x[idx]
        return [out]

    case(
        f"Transpose-{perm}",
        "Transpose",
        {} if perm is None else {"perm": perm},
        [x4],
        _ref_t,
        "exact",
    )


def _ref_concat(axis):
    def ref(*xs):
        ax = axis % xs[0].ndim
        moved = [np.moveaxis(x, ax, 0) for x in xs]
        rows = [row for m in moved for row in m]
        return [np.moveaxis(np.stack(rows), 0, ax)]

    return ref


for axis in (0, 1, -1):
    ins = [rand(74, (2, 3, 4)), rand(75, (2, 3, 4)), rand(76, (2, 3, 4))]
    ins[1] = rand(75, tuple(5 if i == axis % 3 else d for i, d in enumerate((2, 3, 4))))
    case(f"Concat-axis{axis}", "Concat", {"axis": axis}, ins, _ref_concat(axis), "exact")
case(
    "Concat-single-int",
    "Concat",
    {"axis": 0},
    [np.arange(3, dtype=np.int64)],
    lambda x: [x.copy()],
    "exact",
)
