"""TorchTrainer: the backend protocol (backends/base.py) over a torch.nn module and torch.optim.

Arrays cross the boundary as NumPy in canonical form and are moved to the device here:
x (N, *input_shape); y (N,) int64 labels for cross_entropy, else (N, *output_shape) floats;
masks {dropout path: (N, *input_shape) keep-mask}. Everything exported is a NumPy copy in the
trainer's dtype, keyed by the spec's paths.
"""

from __future__ import annotations

import numpy as np
import torch

from ..base import (
    Arrays,
    Trainer,
    check_arrays,
    check_input,
    check_loss,
    check_masks,
    check_rng,
    check_targets,
)
from ..optim import OptimizerSpec
from ..spec import ModelSpec, dropout_layers, param_shapes
from . import nn
from . import optim as opt

_DTYPES = {"float32": torch.float32, "float64": torch.float64}
_TORCH_DEVICE = {"cpu": "cpu", "gpu": "cuda"}


class TorchTrainer(Trainer):
    """A spec built as torch.nn modules and stepped with torch.optim (see backends/torch/optim).

    rng="canonical": dropout masks come from the caller; rng="native": a torch.Generator on the
    device, seeded with `seed`, draws them when the caller passes none. compile=True runs the
    forward and loss of `train_step` through torch.compile (backward and step stay eager).
    """

    backend = "torch"

    def __init__(self, spec: ModelSpec, params: Arrays, buffers: Arrays,
                 optimizer: OptimizerSpec, *, device: str, device_name: str, dtype: str,
                 opt_state: dict | None = None, rng: str = "canonical", seed: int = 0,
                 compile: bool = False):
        check_rng(rng)
        check_loss(spec.loss)
        self.spec, self.optimizer, self.rng, self.seed = spec, optimizer, rng, seed
        self.device, self.device_name, self.dtype = device, device_name, dtype
        self.compiled = compile
        self._dev, self._dtype = torch.device(_TORCH_DEVICE[device]), _DTYPES[dtype]
        generator = None
        if rng == "native":
            generator = torch.Generator(device=self._dev)
            generator.manual_seed(seed)
        self.module = nn.build(spec, params, buffers, dtype=self._dtype, device=self._dev,
                               generator=generator)
        self._params = dict(self.module.named_parameters())  # the spec's paths, in its order
        self._buffer_names = list(param_shapes(spec)[1])
        if opt_state is None:
            self._opt = opt.build(optimizer, self._params)
        else:
            self._opt = opt.load_state(optimizer, self._params, opt_state)
        self._dropouts, self._output_shape = dropout_layers(spec), spec.output_shape
        self._y_dtype = torch.int64 if spec.loss == "cross_entropy" else self._dtype
        self._param_list = list(self._params.values())
        self._shapes = {k: tuple(p.shape) for k, p in self._params.items()}
        self._forward_loss = self._eager_forward_loss
        if compile:
            self._forward_loss = torch.compile(self._eager_forward_loss)

    # ------------------------------------------------------------------ moving arrays

    def _x(self, x: np.ndarray) -> torch.Tensor:
        check_input(x, self.spec.input_shape)
        return self._array(x)  # (N, *spec.input_shape)

    def _array(self, a: np.ndarray, dtype: torch.dtype | None = None) -> torch.Tensor:
        """A numpy array on the device in `dtype` (default the trainer's), in one call: the
        same cast as `.to(device, dtype)` after `as_tensor`, without a second dispatch."""
        a = np.asarray(a)
        if not a.flags.writeable:  # the tasks' arrays are read-only; torch wants to own one
            a = a.copy()
        return torch.as_tensor(a, dtype=dtype or self._dtype, device=self._dev)

    def _y(self, y: np.ndarray, batch: int) -> torch.Tensor:
        """(N,) int64 class labels for cross_entropy, else (N, *spec.output_shape) floats."""
        check_targets(y, batch, self._output_shape, self.spec.loss)
        return self._array(y, self._y_dtype)

    def _masks(self, masks: Arrays | None, batch: int) -> dict | None:
        """Device masks for a training pass; None in native mode means the module draws them."""
        check_masks(self._dropouts, masks, batch, native=self.rng == "native")
        if masks is None:
            return None
        return {k: self._array(m) for k, m in masks.items()}

    def _copies(self) -> dict:
        """The module's buffers, cloned: a pass on them leaves the module's own unchanged."""
        return {k: b.clone() for k, b in self.module.named_buffers()}

    def _eager_forward_loss(self, x, y, masks):
        return nn.loss(self.spec.loss, self.module(x, masks), y)

    # ------------------------------------------------------------------ the protocol

    def forward(self, x: np.ndarray, *, train: bool = False,
                masks: Arrays | None = None) -> np.ndarray:
        """(N, *output_shape). Pure: BatchNorm runs on copies of its buffers, which are dropped."""
        xt = self._x(x)
        masks = self._masks(masks, len(xt)) if train else None
        with torch.no_grad():
            out, _ = nn.apply(self.spec, self.module, self._copies(), xt, train, masks)
        return out.cpu().numpy()

    def probe(self, x: np.ndarray, y: np.ndarray | None = None, *, train: bool = True,
              masks: Arrays | None = None) -> tuple[Arrays, np.ndarray | None]:
        """Leaf outputs from forward hooks, on buffer copies; the input gradient by autograd."""
        xt = self._x(x)
        yt = None if y is None else self._y(y, len(xt))
        masks = self._masks(masks, len(xt)) if train else None
        xt.requires_grad_(y is not None)
        outputs, dx = {}, None
        with torch.set_grad_enabled(y is not None):
            out, _ = nn.apply(self.spec, self.module, self._copies(), xt, train, masks, outputs)
            if y is not None:  # the gradient of x only: no parameter's .grad is touched
                (dx,) = torch.autograd.grad(nn.loss(self.spec.loss, out, yt), xt)
                dx = dx.cpu().numpy()
        return {p: outputs[p].cpu().numpy() for p, _ in self.spec.layers()}, dx

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        xt = self._x(x)
        yt = self._y(y, len(xt))
        with torch.no_grad():  # evaluation reads the buffers and writes none
            out, _ = nn.apply(self.spec, self.module, dict(self.module.named_buffers()), xt,
                              False)
            loss = nn.loss(self.spec.loss, out, yt)
        return float(loss.item()), out.cpu().numpy()

    def loss_and_grads(self, x: np.ndarray, y: np.ndarray,
                       masks: Arrays | None = None) -> tuple[float, Arrays]:
        xt = self._x(x)
        yt, masks = self._y(y, len(xt)), self._masks(masks, len(xt))
        self.module.train()
        for p in self._params.values():
            p.grad = None
        loss = self._eager_forward_loss(xt, yt, masks)
        loss.backward()
        grads = {}
        for k, p in self._params.items():
            if p.grad is None:  # a parameter the loss does not reach
                grads[k] = np.zeros(tuple(p.shape), np.dtype(self.dtype))
            else:
                grads[k] = p.grad.detach().cpu().numpy().copy()
        return float(loss.item()), grads

    def apply_gradients(self, grads: Arrays) -> None:
        check_arrays("gradients", grads, self._shapes)
        grads = {k: torch.as_tensor(np.asarray(grads[k])).to(p.device, p.dtype)
                 for k, p in self._params.items()}
        self._params, self._opt = opt.step(self.optimizer, self._params, grads, self._opt)

    def train_step(self, x: np.ndarray, y: np.ndarray, masks: Arrays | None = None) -> float:
        """One step, with no Python work a bare torch loop would not do (issue 16): the mode
        is set only when it changes (`Module.train` walks every submodule, about 10% of a
        tiny MLP's step), gradients are cleared as `zero_grad(set_to_none=True)` clears them,
        and the optimizer steps on the gradients backward left in `.grad`."""
        xt = self._x(x)
        yt, masks = self._y(y, len(xt)), self._masks(masks, len(xt))
        if not self.module.training:  # every mode change goes through the root (nn.apply)
            self.module.train()
        for p in self._param_list:
            p.grad = None
        loss = self._forward_loss(xt, yt, masks)
        loss.backward()
        self._opt = opt._step_own_grads(self._opt)  # a .grad left None: its param is skipped
        return float(loss.item())

    def params(self) -> Arrays:
        return {k: p.detach().cpu().numpy().copy() for k, p in self._params.items()}

    def buffers(self) -> Arrays:
        """running_mean / running_var only: the spec names them; num_batches_tracked is torch's."""
        return {k: self.module.get_buffer(k).detach().cpu().numpy().copy()
                for k in self._buffer_names}

    def opt_state(self) -> dict:
        return opt.export_state(self.optimizer, self._params, self._opt)
