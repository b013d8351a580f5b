"""Bare training steps, written by hand, over the same models as benchmarks/models.py (issue 3).

What a practitioner would write with no harness: a torch.nn model built by hand and stepped
with torch.optim.SGD (zero_grad, forward, loss, backward, step), and one jax.jit of
`jax.value_and_grad` and an `optax.sgd` update over the same flat parameter dict. Both load
the canonical weights, so `check` can hold each to the backend's own forward.

Each step returns the loss as a Python float, as `Trainer.train_step` does: a loop that logs
its loss pays that device-to-host sync too.
"""

from __future__ import annotations

import numpy as np

from .models import LR, MODELS, SGD, batch, spec_for, state

# ----------------------------------------------------------------------------- torch


def torch_model(name: str):
    """The model `name` as a hand-written torch.nn.Module with the canonical weights loaded."""
    import torch
    from torch import nn

    m = MODELS[name]
    if m["arch"] == "mlp":
        fin = int(np.prod(m["input_shape"]))
        model = nn.Sequential(nn.Flatten(), nn.Linear(fin, 64), nn.ReLU(), nn.Linear(64, 64),
                              nn.ReLU(), nn.Linear(64, m["n_out"]))
    elif m["arch"] == "lenet":
        model = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                              nn.Conv2d(6, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                              nn.Flatten(), nn.Linear(64, 120), nn.ReLU(), nn.Linear(120, 84),
                              nn.ReLU(), nn.Linear(84, m["n_out"]))
    else:
        model = _torch_resnet(m["n_out"])
    params, _ = state(name)
    with torch.no_grad():
        for p, (key, value) in zip(model.parameters(), params.items(), strict=True):
            if tuple(p.shape) != value.shape:
                raise ValueError(f"{name}: {key} {value.shape} != hand-built {tuple(p.shape)}")
            p.copy_(torch.from_numpy(value))
    return model


def _torch_resnet(n_out: int):
    """stem, one basic block per stage (16, 32, 64 channels), global average pool, head."""
    import torch.nn.functional as F
    from torch import nn

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1)
            self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
            self.proj = nn.Conv2d(cin, cout, 1, stride=stride) if cin != cout else None

        def forward(self, x):
            short = x if self.proj is None else self.proj(x)
            return F.relu(self.conv2(F.relu(self.conv1(x))) + short)

    class ResNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(1, 16, 3, padding=1)
            self.blocks = nn.Sequential(Block(16, 16, 1), Block(16, 32, 2), Block(32, 64, 2))
            self.head = nn.Linear(64, n_out)

        def forward(self, x):
            h = self.blocks(F.relu(self.stem(x)))  # (N, 64, 2, 2)
            return self.head(h.mean(dim=(2, 3)))  # global average pool -> (N, 64)

    return ResNet()


def torch_step(name: str, device: str = "cpu"):
    """A zero-argument bare torch step on the model's benchmark batch; returns the loss."""
    import torch
    import torch.nn.functional as F

    dev = torch.device("cuda" if device == "gpu" else "cpu")
    model = torch_model(name).to(dev)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    loss_fn = F.mse_loss if MODELS[name]["loss"] == "mse" else F.cross_entropy
    x, y = batch(name)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(torch.from_numpy(x).to(dev)), torch.from_numpy(y).to(dev))
        loss.backward()
        opt.step()
        return loss.item()

    return step


# ----------------------------------------------------------------------------- jax


def jax_forward(name: str):
    """forward(params, x) -> outputs, hand-written with jax.lax over the canonical params."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    arch = MODELS[name]["arch"]

    def dense(p, key, h):
        return h @ p[f"{key}.weight"].T + p[f"{key}.bias"]

    def conv(p, key, h, stride=1, pad=1):
        y = lax.conv_general_dilated(h, p[f"{key}.weight"], (stride, stride),
                                     [(pad, pad), (pad, pad)],
                                     dimension_numbers=("NCHW", "OIHW", "NCHW"))
        return y + p[f"{key}.bias"][None, :, None, None]

    def maxpool(h):  # 2x2, stride 2: (N, C, H, W) -> (N, C, H/2, W/2)
        return lax.reduce_window(h, -jnp.inf, lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")

    relu = jax.nn.relu

    def mlp(p, x):
        h = x.reshape(x.shape[0], -1)
        h = relu(dense(p, "layer1.fc", h))
        return dense(p, "head", relu(dense(p, "layer2.fc", h)))

    def lenet(p, x):
        h = maxpool(relu(conv(p, "conv1", x)))
        h = maxpool(relu(conv(p, "conv2", h))).reshape(x.shape[0], -1)  # (N, 64)
        return dense(p, "head", relu(dense(p, "fc2.fc", relu(dense(p, "fc1.fc", h)))))

    def resnet(p, x):
        h = relu(conv(p, "stem", x))
        for s, stride in ((1, 1), (2, 2), (3, 2)):
            key = f"stage{s}_block1.res"
            body = relu(conv(p, f"{key}.body.conv1", h, stride))
            body = conv(p, f"{key}.body.conv2", body)
            short = h if s == 1 else conv(p, f"{key}.shortcut.proj", h, stride, pad=0)
            h = relu(body + short)
        return dense(p, "head", h.mean(axis=(2, 3)))  # (N, 64, 2, 2) -> (N, 64)

    return {"mlp": mlp, "lenet": lenet, "resnet": resnet}[arch]


def jax_step(name: str, device: str = "cpu"):
    """A zero-argument bare jitted JAX step (value_and_grad + optax.sgd); returns the loss."""
    import jax
    import jax.numpy as jnp
    import optax

    forward, mse = jax_forward(name), MODELS[name]["loss"] == "mse"

    def loss_fn(params, x, y):
        out = forward(params, x)
        if mse:
            return jnp.mean(jnp.square(out - y))
        logp = jax.nn.log_softmax(out, axis=1)  # (N, classes)
        return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))

    tx = optax.sgd(LR)

    @jax.jit
    def step(params, opt_state, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    dev = jax.devices(device)[0]
    params, _ = state(name)
    carry = [jax.device_put(params, dev), None]
    carry[1] = tx.init(carry[0])
    x, y = batch(name)
    if not mse:
        y = y.astype(np.int32)

    def run():
        carry[0], carry[1], loss = step(carry[0], carry[1], jax.device_put(x, dev),
                                        jax.device_put(y, dev))
        return float(loss)

    return run


def check(name: str, atol: float = 1e-4) -> float:
    """Max |bare - backend| forward difference (torch, JAX); raises if over atol."""
    import backends

    x, _ = batch(name)
    params, buffers = state(name)
    spec = spec_for(name)
    worst = 0.0
    if backends.installed("torch"):
        import torch

        ref = backends.load("torch").build(spec, params, buffers, SGD).forward(x)
        with torch.no_grad():
            worst = max(worst, float(np.abs(torch_model(name)(torch.from_numpy(x)).numpy()
                                            - ref).max()))
    if backends.installed("jax"):
        ref = backends.load("jax").build(spec, params, buffers, SGD).forward(x)
        out = np.asarray(jax_forward(name)(params, x))
        worst = max(worst, float(np.abs(out - ref).max()))
    if worst > atol:
        raise AssertionError(f"{name}: the bare model differs from the backend's by {worst}")
    return worst
