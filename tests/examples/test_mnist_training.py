"""The MNIST example: data split, images, numpy network, hand-written backprop, training."""

from __future__ import annotations

import time

import numpy as np
import pytest

from tests.examples import EXAMPLE, load_example

mnist = load_example("mnist", "mnist.py")
train = load_example("mnist_example_train", "train.py")
make_images = load_example("mnist_example_make_images", "make_images.py")


def _has_graph_builder() -> bool:
    try:
        from popef.runtime import GraphBuilder  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture(scope="module")
def raw():
    return mnist.load_raw()


@pytest.fixture(scope="module")
def split():
    return mnist.load_split()


# ------------------------------------------------------------------------------------ data


def test_data_file(raw):
    x, y = raw
    assert x.shape == (5000, 28, 28) and x.dtype == np.uint8
    assert y.shape == (5000,) and y.dtype == np.uint8
    assert np.array_equal(np.bincount(y), [500] * 10)
    assert np.all(np.diff(y.astype(int)) >= 0), "rows are sorted by class"
    assert (EXAMPLE / "data" / "README.md").is_file()


def test_split_rule(raw, split):
    x, y = raw
    x_train, y_train, x_held, y_held = split
    held = mnist.held_out_mask(len(y))
    assert held.sum() == 1000 and (~held).sum() == 4000
    for i, expected in [
        (0, False),
        (399, False),
        (400, True),
        (499, True),
        (500, False),
        (899, False),
        (900, True),
        (4900, True),
        (4999, True),
    ]:
        assert held[i] == expected, i
    assert np.array_equal(np.flatnonzero(held), [i for i in range(5000) if i % 500 >= 400])

    assert x_train.shape == (4000, 1, 28, 28) and x_held.shape == (1000, 1, 28, 28)
    assert x_train.dtype == np.float32 and x_held.dtype == np.float32
    assert y_train.shape == (4000,) and y_held.shape == (1000,)
    assert np.issubdtype(y_train.dtype, np.integer)
    assert np.array_equal(np.bincount(y_train), [400] * 10)
    assert np.array_equal(np.bincount(y_held), [100] * 10)
    assert 0.0 <= x_train.min() and x_train.max() <= 1.0
    assert np.array_equal(x_train[:, 0], x[~held] / np.float32(255))
    assert np.array_equal(x_held[:, 0], x[held] / np.float32(255))
    assert np.array_equal(y_train, y[~held]) and np.array_equal(y_held, y[held])
    # Row 400 of the file is the first held-out image, row 500 the 401st training image.
    assert np.array_equal(x_held[0, 0] * 255, x[400])
    assert np.array_equal(x_train[400, 0] * 255, x[500])


def test_limit_rows_is_class_balanced(split):
    _, y_train, _, _ = split
    rows = train.limit_rows(y_train, 30)
    assert len(rows) == 30
    assert np.array_equal(np.bincount(y_train[rows], minlength=10), [3] * 10)
    assert np.array_equal(rows[:3], [0, 1, 2])  # the first rows of each class
    assert np.array_equal(train.limit_rows(y_train, None), np.arange(4000))


# ---------------------------------------------------------------------------------- images


def test_images_equal_their_data_rows(raw):
    from PIL import Image

    x, y = raw
    for digit in range(10):
        row = 500 * digit + 400
        assert mnist.image_row(digit) == row
        assert y[row] == digit
        with Image.open(EXAMPLE / "img" / f"{digit}.png") as im:
            assert im.format == "PNG" and im.mode == "L" and im.size == (28, 28)
            pixels = np.asarray(im)
        assert pixels.dtype == np.uint8
        assert np.array_equal(pixels, x[row]), digit


def test_make_images_regenerates_them(tmp_path):
    from PIL import Image

    paths = make_images.make_images(tmp_path)
    assert [p.name for p in paths] == [f"{d}.png" for d in range(10)]
    for p in paths:
        with Image.open(p) as new, Image.open(EXAMPLE / "img" / p.name) as old:
            assert np.array_equal(np.asarray(new), np.asarray(old))


# --------------------------------------------------------------------------------- network


def test_init_params():
    params = mnist.init_params(0)
    assert list(params) == list(mnist.PARAM_SHAPES)
    for name, shape in mnist.PARAM_SHAPES.items():
        assert params[name].shape == shape and params[name].dtype == np.float32, name
        bound = 1 / np.sqrt(np.prod(mnist.PARAM_SHAPES[name.split(".")[0] + ".weight"][1:]))
        assert np.abs(params[name]).max() <= bound
    again = mnist.init_params(0)
    assert all(np.array_equal(params[k], again[k]) for k in params)
    other = mnist.init_params(1)
    assert not np.array_equal(params["fc1.weight"], other["fc1.weight"])


def test_forward_shapes_and_probabilities(split):
    x_held = split[2]
    probs = mnist.forward(mnist.init_params(0), x_held[:7])
    assert probs.shape == (7, 10) and probs.dtype == np.float32
    assert np.allclose(probs.sum(axis=1), 1, atol=1e-6)
    assert np.all(probs >= 0)
    # (N, 28, 28) is accepted too
    assert np.array_equal(mnist.forward(mnist.init_params(0), x_held[:7, 0]), probs)


def test_trainer_forward_matches_reference(split):
    x_held = split[2][::97]
    params = mnist.init_params(3)
    logits, _ = train.forward_train(params, x_held)
    assert logits.dtype == np.float32
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(
        z / z.sum(axis=1, keepdims=True), mnist.forward(params, x_held), atol=1e-5
    )


def test_im2col_col2im_are_adjoint():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 7, 6, 3))
    d = rng.standard_normal((2, 5, 4, 27))
    assert np.isclose(np.sum(train._im2col(x) * d), np.sum(x * train._col2im(d, x.shape)))


def test_max_pool_gradient_goes_to_one_element_of_a_tie():
    x = np.zeros((1, 4, 5, 1))  # all tied, odd width: last column dropped
    out, which = train._pool_forward(x)
    assert out.shape == (1, 2, 2, 1) and np.all(which == 0)
    dx = train._pool_backward(np.ones_like(out), which, x.shape)
    assert dx.sum() == 4
    assert np.array_equal(np.flatnonzero(dx[0, :, :, 0]), [0, 2, 10, 12])


def _directional_fd(params, x, y, mask, name, direction, eps):
    plus = dict(params)
    plus[name] = params[name] + eps * direction
    minus = dict(params)
    minus[name] = params[name] - eps * direction
    lp = train.loss_and_grads(plus, x, y, mask)[0]
    lm = train.loss_and_grads(minus, x, y, mask)[0]
    return (lp - lm) / (2 * eps)


def test_backprop_matches_finite_differences():
    # float64 and generic (random) pixels: no ties in the max pools and no pre-activation
    # at exactly zero, so the loss is smooth around the point.
    rng = np.random.default_rng(42)
    params = {k: v.astype(np.float64) for k, v in mnist.init_params(7).items()}
    x = rng.random((3, 1, 28, 28))
    y = np.array([1, 7, 4])
    mask = (rng.random((3, 128)) >= 0.5) * 2.0  # inverted dropout, p = 0.5
    loss, grads, logits = train.loss_and_grads(params, x, y, mask)
    assert logits.dtype == np.float64 and np.isfinite(loss)
    assert set(grads) == set(params)
    eps = 1e-6
    for name, value in params.items():
        assert grads[name].shape == value.shape and grads[name].dtype == np.float64
        direction = rng.standard_normal(value.shape)
        numeric = _directional_fd(params, x, y, mask, name, direction, eps)
        analytic = float(np.sum(grads[name] * direction))
        assert numeric == pytest.approx(analytic, rel=1e-5, abs=1e-8), name
        # and a few single entries, including the largest gradient
        flat = grads[name].ravel()
        picks = {int(np.argmax(np.abs(flat)))} | set(rng.choice(flat.size, 3, replace=False))
        for i in sorted(picks):
            e = np.zeros(flat.size)
            e[i] = 1
            numeric = _directional_fd(params, x, y, mask, name, e.reshape(value.shape), eps)
            assert numeric == pytest.approx(flat[i], rel=1e-4, abs=1e-8), (name, i)


def test_cross_entropy_gradient():
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((4, 10))
    y = np.array([0, 3, 9, 3])
    loss, d = train.cross_entropy(logits, y)
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert loss == pytest.approx(-np.mean(np.log(p[np.arange(4), y])))
    onehot = np.eye(10)[y]
    np.testing.assert_allclose(d, (p - onehot) / 4, atol=1e-12)


def test_random_shift_moves_images_within_bounds():
    rng = np.random.default_rng(0)
    img = np.zeros((50, 1, 28, 28), np.float32)
    img[:, 0, 12:16, 12:16] = 1
    shifted = train.random_shift(img, 2, rng)
    assert shifted.shape == img.shape and shifted.dtype == np.float32
    assert np.all(shifted.sum(axis=(1, 2, 3)) == 16)  # the blob never leaves the frame
    rows = [np.flatnonzero(s[0].any(axis=1))[0] for s in shifted]
    assert set(rows) == {10, 11, 12, 13, 14}
    assert train.random_shift(img, 0, rng) is img


# ----------------------------------------------------------------------------------- torch


def _torch_net(params, torch):
    nn = torch.nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 32, 3)
            self.conv2 = nn.Conv2d(32, 64, 3)
            self.fc1 = nn.Linear(1600, 128)
            self.fc2 = nn.Linear(128, 10)
            self.dropout = nn.Dropout(0.5)

        def forward(self, x):
            f = nn.functional
            x = (x - 0.1307) / 0.3081
            x = f.relu(f.max_pool2d(self.conv1(x), 2))
            x = f.relu(f.max_pool2d(self.conv2(x), 2))
            x = torch.flatten(x, 1)
            x = self.dropout(f.relu(self.fc1(x)))
            return f.softmax(self.fc2(x), dim=-1)

    net = Net()
    net.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in params.items()})
    return net.eval()


def test_forward_matches_torch(split):
    torch = pytest.importorskip("torch")
    x_held = split[2][::50]
    rng = np.random.default_rng(5)
    params = mnist.init_params(11)
    # sharpen the random network a little so that the probabilities are not all ~0.1
    params["fc2.weight"] = (params["fc2.weight"] * 8).astype(np.float32)
    with torch.no_grad():
        expected = _torch_net(params, torch)(torch.from_numpy(x_held)).numpy()
    got = mnist.forward(params, x_held)
    np.testing.assert_allclose(got, expected, atol=2e-6, rtol=1e-4)
    assert np.array_equal(got.argmax(axis=1), expected.argmax(axis=1))
    noise = rng.random(x_held.shape, dtype=np.float32)
    with torch.no_grad():
        expected = _torch_net(params, torch)(torch.from_numpy(noise)).numpy()
    np.testing.assert_allclose(mnist.forward(params, noise), expected, atol=2e-6, rtol=1e-4)


def test_backprop_matches_torch_autograd():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(8)
    params = {k: v.astype(np.float64) for k, v in mnist.init_params(2).items()}
    x = rng.random((4, 1, 28, 28))
    y = np.array([3, 1, 4, 1])
    mask = (rng.random((4, 128)) >= 0.5) * 2.0
    loss, grads, _ = train.loss_and_grads(params, x, y, mask)

    net = _torch_net(params, torch).double()
    f = torch.nn.functional
    t = (torch.from_numpy(x) - 0.1307) / 0.3081
    t = f.relu(f.max_pool2d(net.conv1(t), 2))
    t = f.relu(f.max_pool2d(net.conv2(t), 2))
    t = f.relu(net.fc1(torch.flatten(t, 1))) * torch.from_numpy(mask)
    tloss = f.cross_entropy(net.fc2(t), torch.from_numpy(y))
    tloss.backward()
    assert loss == pytest.approx(tloss.item(), rel=1e-12)
    for name, p in net.named_parameters():
        np.testing.assert_allclose(grads[name], p.grad.numpy(), rtol=1e-9, atol=1e-12, err_msg=name)


# -------------------------------------------------------------------------------- training


def test_adam_matches_reference_update():
    params = {"w": np.array([1.0, -2.0], np.float32)}
    opt = train.Adam(params, lr=0.1)
    g = {"w": np.array([0.5, -0.25], np.float32)}
    opt.step(params, g)
    # first Adam step moves every element by lr·sign(g)
    np.testing.assert_allclose(params["w"], [0.9, -1.9], rtol=1e-6)


def test_short_training_run_beats_chance(tmp_path, split, capsys):
    params_path = tmp_path / "params.npz"
    t0 = time.thread_time()  # CPU time: the work, however loaded the machine
    rc = train.main(
        [
            "--epochs",
            "1",
            "--limit",
            "800",
            "--seed",
            "0",
            "--no-progress",
            "--no-export",
            "--save-params",
            str(params_path),
            "--output",
            str(tmp_path / "never.popef"),
        ]
    )
    elapsed = time.thread_time() - t0
    assert rc == 0
    assert elapsed < 60, f"short training run took {elapsed:.1f} s of CPU time"
    out = capsys.readouterr().out
    assert "training on 800 images, 1000 held out" in out
    assert "epoch  1/1" in out and "held-out acc" in out
    assert not (tmp_path / "never.popef").exists()

    params = mnist.load_params(params_path)
    assert all(params[k].dtype == np.float32 for k in params)
    _, _, x_held, y_held = split
    acc = mnist.accuracy(params, x_held, y_held)
    assert acc >= 0.5, f"held-out accuracy {acc:.3f} after a short run (chance is 0.1)"
    assert f"final held-out accuracy {100 * acc:.2f}%" in out


def test_training_is_reproducible(split):
    x_train, y_train, x_held, y_held = split
    rows = train.limit_rows(y_train, 64)
    kwargs = dict(epochs=1, batch_size=32, seed=3, progress=False, log=lambda s: None)
    a, hist_a = train.train(x_train[rows], y_train[rows], **kwargs)
    b, hist_b = train.train(x_train[rows], y_train[rows], **kwargs)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert hist_a[0]["loss"] == hist_b[0]["loss"] and hist_a[0]["held_acc"] is None
    c, _ = train.train(x_train[rows], y_train[rows], **{**kwargs, "seed": 4})
    assert not np.array_equal(a["fc1.weight"], c["fc1.weight"])


# ---------------------------------------------------------------------------------- export


needs_builder = pytest.mark.skipif(
    not _has_graph_builder(), reason="popef.runtime.GraphBuilder is not available"
)


@needs_builder
def test_export_popef_runs_like_forward(tmp_path, split):
    from popef import DataType
    from popef.runtime import ModelRunner

    params = mnist.init_params(4)
    params["fc2.weight"] = (params["fc2.weight"] * 8).astype(np.float32)
    path = mnist.export_popef(params, tmp_path / "executable.popef")
    assert path.is_file()
    x_held = split[2][::100]
    with ModelRunner(str(path)) as runner:
        assert runner.model.name == "mnist"
        [inp] = runner.get_execute_inputs()
        [out] = runner.get_execute_outputs()
        assert (inp.name, inp.dtype, tuple(inp.shape)) == ("input", DataType.F32, (1, 1, 28, 28))
        assert (out.name, out.dtype, tuple(out.shape)) == (
            "softmax/Softmax:0",
            DataType.F32,
            (1, 10),
        )
        got = np.concatenate(
            [runner.execute({"input": x[None]})["softmax/Softmax:0"] for x in x_held]
        )
    np.testing.assert_allclose(got, mnist.forward(params, x_held), atol=1e-6, rtol=1e-5)


@needs_builder
def test_train_main_exports(tmp_path, split):
    from popef.runtime import ModelRunner

    out = tmp_path / "model.popef"
    params_path = tmp_path / "params.npz"
    assert (
        train.main(
            [
                "--epochs",
                "1",
                "--limit",
                "20",
                "--no-progress",
                "--output",
                str(out),
                "--save-params",
                str(params_path),
            ]
        )
        == 0
    )
    params = mnist.load_params(params_path)
    x = split[2][:3]
    with ModelRunner(str(out)) as runner:
        got = np.concatenate([runner.execute({"input": xi[None]})["softmax/Softmax:0"] for xi in x])
    np.testing.assert_allclose(got, mnist.forward(params, x), atol=1e-6, rtol=1e-5)
