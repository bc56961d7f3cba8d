"""CuPy equals NumPy: every op's forward and backward, and a training step on the GPU.

Marked ``gpu``; skipped cleanly where CuPy or a GPU is missing.
"""
import numpy as np
import pytest

import skengine as sk
import skengine.functional as F
from skengine.backend import cuda_available

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not cuda_available(), reason="needs CuPy and an NVIDIA GPU")]

rng = np.random.default_rng(0)


def both(fn, *arrays, tol=1e-4):
    """Run fn on CPU and GPU copies of the inputs; outputs and input gradients must agree."""
    results = []
    for device in ("cpu", "cuda"):
        xs = [sk.Tensor(sk.to_device(a.copy(), device), requires_grad=True) for a in arrays]
        y = fn(*xs)
        (y * sk.Tensor(np.linspace(-1, 1, y.numel()).reshape(y.shape).astype(y.dtype)).to(device)).sum().backward()
        results.append((y.numpy(), [x.grad.numpy() for x in xs]))
    (y0, g0), (y1, g1) = results
    np.testing.assert_allclose(y1, y0, rtol=tol, atol=tol)
    for a, b in zip(g1, g0):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


def r(*shape):
    return rng.standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("cfg", [dict(), dict(stride=2, padding=1), dict(padding=2, dilation=2, groups=4),
                                 dict(padding=(1, 0), groups=2)])
def test_conv2d(cfg):
    groups = cfg.get("groups", 1)
    both(lambda x, w, b: F.conv2d(x, w, b, **cfg), r(2, 8, 9, 9), r(6 if groups != 4 else 8, 8 // groups, 3, 3),
         r(6 if groups != 4 else 8))


@pytest.mark.parametrize("name,fn,shape", [
    ("relu", F.relu, (4, 5)), ("sigmoid", F.sigmoid, (4, 5)), ("tanh", F.tanh, (4, 5)),
    ("exp", lambda x: x.exp(), (4, 5)), ("softmax", lambda x: F.softmax(x, 1), (4, 5)),
    ("log_softmax", lambda x: F.log_softmax(x, 1), (4, 5)), ("sum", lambda x: x.sum(1), (4, 5)),
    ("mean", lambda x: x.mean((0, 2), keepdim=True), (3, 4, 5)), ("amax", lambda x: x.amax(1), (4, 5)),
    ("getitem", lambda x: x[np.array([0, 0, 2]), 1:], (4, 5)), ("matmul", lambda x: x @ x.T, (4, 5)),
    ("permute", lambda x: x.permute(2, 0, 1), (3, 4, 5)), ("split", lambda x: x.split(2, 1)[1] * 2, (4, 5)),
    ("cat", lambda x: sk.cat([x, x * 2], 0), (4, 5)), ("stack", lambda x: sk.stack([x, x], 1), (4, 5)),
    ("max_pool", lambda x: F.max_pool2d(x, 3, 2, 1), (2, 3, 8, 8)),
    ("avg_pool", lambda x: F.avg_pool2d(x, 2), (2, 3, 8, 8)),
    ("gap", lambda x: F.adaptive_avg_pool2d(x, 1), (2, 3, 8, 8)),
    ("max_dim", lambda x: x.max(1).values, (4, 5)), ("min_dim", lambda x: x.min(0).values, (4, 5)),
    ("clamp", lambda x: x.clamp(-0.5, 0.5), (4, 5)), ("var", lambda x: x.var(1), (4, 5)),
    ("where", lambda x: sk.where(x > 0, x, x * 2), (4, 5)), ("expand", lambda x: x.expand(3, 4, 5), (4, 5)),
    ("setitem", lambda x: sk.ops.setitem(x * 1, (slice(None), 1), x[:, 0]), (4, 5)),
    ("double", lambda x: x.double() * 2, (4, 5)), ("rpow", lambda x: 2 ** x, (4, 5)),
])
def test_ops(name, fn, shape):
    both(fn, r(*shape))


def test_batch_norm_and_losses():
    both(lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True), r(4, 3, 5, 5), r(3), r(3))
    both(lambda x, w, b: F.batch_norm(x, sk.zeros(3, device=x.device), sk.ones(3, device=x.device),
                                                 w, b, training=False), r(4, 3, 5, 5), r(3), r(3))
    target = np.array([0, 3, 1, 4])
    both(lambda x: F.cross_entropy(x, sk.to_device(target, x.device), label_smoothing=0.1).reshape(1), r(4, 5))
    both(lambda x: F.nll_loss(F.log_softmax(x, 1), sk.to_device(target, x.device)).reshape(1), r(4, 5))


def test_training_step_on_gpu_with_device_augmentation():
    import cupy

    from skengine.data import DataLoader
    from skengine.models import create
    from skengine.optim import SGD

    images = rng.integers(0, 256, (64, 3, 32, 32), dtype=np.uint8)
    labels = rng.integers(0, 10, 64)
    loader = DataLoader(images, labels, 32, shuffle=True, augment=True, xp=cupy)
    model = create("sknet_cifar_tiny", num_classes=10).to("cuda")
    opt = SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(3):
        for x, y in loader:
            assert isinstance(x, cupy.ndarray)
            loss = F.cross_entropy(model(sk.Tensor(x)), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    assert all(p.device == "cuda" for p in model.parameters())
    assert np.isfinite(losses).all()


def test_optimizer_state_follows_a_model_moved_after_some_steps():
    from skengine import nn
    from skengine.optim import SGD, Adam

    x = r(5, 4)
    for make in (lambda ps: SGD(ps, lr=0.1, momentum=0.9), lambda ps: Adam(ps, lr=0.01)):
        results = []
        for move in (False, True):
            sk.manual_seed(0)
            model = nn.Linear(4, 3)
            opt = make(model.parameters())
            for step in range(4):
                if move and step == 2:
                    model.to("cuda")  # the state made on the CPU must follow
                xt = sk.Tensor(sk.to_device(x, "cuda" if move and step >= 2 else "cpu"))
                opt.zero_grad()
                (model(xt) ** 2).sum().backward()
                opt.step()
            results.append(model.weight.numpy())
        np.testing.assert_allclose(results[1], results[0], rtol=1e-5, atol=1e-6)


def test_cpu_scalars_and_host_gradients_meet_gpu_tensors():
    x = sk.Tensor(sk.to_device(r(3), "cuda"), requires_grad=True)
    y = sk.tensor(2.0) * x + sk.tensor(1.0)  # 0-d CPU tensors follow the GPU operand, as in torch
    y.backward(gradient=np.ones(3, np.float32))  # a host gradient for a GPU output
    assert y.device == "cuda" and x.grad.device == "cuda"
    np.testing.assert_allclose(x.grad.numpy(), 2.0)
