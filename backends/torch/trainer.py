"""TorchTrainer: the backend protocol (backends/base.py) over a torch.nn module and torch.optim.

Arrays cross the boundary as NumPy in canonical form and are moved to the device here:
x (N, *input_shape); y (N,) int64 labels for cross_entropy, else (N, *output_shape) floats;
masks {dropout path: (N, *input_shape) keep-mask}. Everything exported is a NumPy copy in the
trainer's dtype, keyed by the spec's paths.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..base import Arrays, Trainer
from ..optim import OptimizerSpec
from ..spec import LOSSES, ModelSpec
from . import nn as tnn
from . import optim as topt

_DTYPES = {"float32": torch.float32, "float64": torch.float64}
_TORCH_DEVICE = {"cpu": "cpu", "gpu": "cuda"}


def _loss(name: str, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean over every element (and the batch), as SPEC 2's L2, cross-entropy and L1."""
    if name == "mse":
        return F.mse_loss(out, y)
    if name == "cross_entropy":
        return F.cross_entropy(out, y)  # out (N, K) logits, y (N,) int64
    if name == "l1":
        return F.l1_loss(out, y)
    raise ValueError(f"unknown loss {name!r}; known: {', '.join(LOSSES)}")


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
        if rng not in ("canonical", "native"):
            raise ValueError(f"rng must be 'canonical' or 'native', got {rng!r}")
        if spec.loss not in LOSSES:
            raise ValueError(f"unknown loss {spec.loss!r}; known: {', '.join(LOSSES)}")
        self.spec, self.optimizer = spec, optimizer
        self.device, self.device_name, self.dtype = device, device_name, dtype
        self.rng, self.seed, self.compiled = rng, seed, compile
        self.torch_device = torch.device(_TORCH_DEVICE[device])
        self.torch_dtype = _DTYPES[dtype]
        generator = None
        if rng == "native":
            generator = torch.Generator(device=self.torch_device)
            generator.manual_seed(seed)
        self.module = tnn.build_module(spec, generator).to(self.torch_device, self.torch_dtype)
        tnn.load_canonical(self.module, spec, params, buffers)
        self.param_names, self.buffer_names = tnn.canonical_names(spec)
        self._params = [self.module.get_parameter(k) for k in self.param_names]
        if [k for k, _ in self.module.named_parameters()] != self.param_names:
            # add_module replaces a same-named sibling, so a duplicate name in the spec shows here
            raise ValueError(f"spec {spec.arch!r}: module parameters are not the spec's, in its "
                             f"order (duplicate sibling names?)")
        self.torch_optimizer = topt.build_optimizer(
            optimizer, self._params, foreach=self.torch_device.type == "cuda")
        self._t = 0
        if opt_state is not None:
            self._t = topt.load_state(self.torch_optimizer, optimizer, self.param_names,
                                      self._params, opt_state)
        self._forward_loss = self._eager_forward_loss
        if compile:
            self._forward_loss = torch.compile(self._eager_forward_loss)

    # ------------------------------------------------------------------ moving arrays

    def _x(self, x: np.ndarray) -> torch.Tensor:
        x = np.asarray(x)
        if x.shape[1:] != tuple(self.spec.input_shape):
            raise ValueError(f"input shape {x.shape}: expected (N, *{self.spec.input_shape})")
        return self._array(x)

    def _array(self, a: np.ndarray) -> torch.Tensor:
        a = np.asarray(a)
        if not a.flags.writeable:  # the tasks' arrays are read-only; torch wants to own one
            a = a.copy()
        return torch.as_tensor(a).to(self.torch_device, self.torch_dtype)

    def _y(self, y: np.ndarray) -> torch.Tensor:
        y = np.asarray(y)
        y = torch.as_tensor(y if y.flags.writeable else y.copy()).to(self.torch_device)
        if self.spec.loss == "cross_entropy":
            return y.to(torch.int64)
        return y.to(self.torch_dtype)

    def _masks(self, masks: Arrays | None) -> dict | None:
        if masks is None:
            return None
        return {k: self._array(m) for k, m in masks.items()}

    def _eager_forward_loss(self, x, y, masks):
        return _loss(self.spec.loss, self.module(x, masks), y)

    # ------------------------------------------------------------------ the protocol

    def forward(self, x: np.ndarray, *, train: bool = False,
                masks: Arrays | None = None) -> np.ndarray:
        """(N, *output_shape). Pure: BatchNorm runs on copies of its buffers, which are dropped.

        torch.func.functional_call swaps the copies in for this call only, so even a training
        forward (batch statistics, running-stat update) leaves the module's buffers unchanged.
        """
        self.module.train(train)
        copies = {k: b.clone() for k, b in self.module.named_buffers()}
        with torch.no_grad():
            out = torch.func.functional_call(self.module, copies,
                                             (self._x(x), self._masks(masks)))
        return out.cpu().numpy()

    def probe(self, x: np.ndarray, y: np.ndarray | None = None, *, train: bool = True,
              masks: Arrays | None = None) -> tuple[Arrays, np.ndarray | None]:
        """Leaf outputs from forward hooks (module paths are spec paths), on buffer copies."""
        self.module.train(train)
        outputs = {}

        def keep(path):
            def hook(module, args, out):
                outputs[path] = out.detach()
            return hook

        paths = [path for path, _ in self.spec.layers()]
        hooks = [self.module.get_submodule(p).register_forward_hook(keep(p)) for p in paths]
        copies = {k: b.clone() for k, b in self.module.named_buffers()}
        xt = self._x(x).requires_grad_(y is not None)
        dx = None
        try:
            with torch.set_grad_enabled(y is not None):
                out = torch.func.functional_call(self.module, copies, (xt, self._masks(masks)))
                if y is not None:  # the gradient of x only: no parameter's .grad is touched
                    (dx,) = torch.autograd.grad(_loss(self.spec.loss, out, self._y(y)), xt)
                    dx = dx.cpu().numpy()
        finally:
            for h in hooks:
                h.remove()
        return {p: outputs[p].cpu().numpy() for p in paths}, dx

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        self.module.eval()
        with torch.no_grad():
            out = self.module(self._x(x), None)
            loss = _loss(self.spec.loss, out, self._y(y))
        return float(loss.item()), out.cpu().numpy()

    def loss_and_grads(self, x: np.ndarray, y: np.ndarray,
                       masks: Arrays | None = None) -> tuple[float, Arrays]:
        self.module.train()
        for p in self._params:
            p.grad = None
        loss = self._eager_forward_loss(self._x(x), self._y(y), self._masks(masks))
        loss.backward()
        grads = {}
        for k, p in zip(self.param_names, self._params):
            if p.grad is None:  # a parameter the loss does not reach
                grads[k] = np.zeros(tuple(p.shape), topt.np_dtype(p))
            else:
                grads[k] = p.grad.detach().cpu().numpy().copy()
        return float(loss.item()), grads

    def apply_gradients(self, grads: Arrays) -> None:
        missing = [k for k in self.param_names if k not in grads]
        if missing:
            raise KeyError(f"gradients missing for {missing}")
        for k, p in zip(self.param_names, self._params):
            p.grad = torch.as_tensor(np.asarray(grads[k])).to(p.device, p.dtype)
        self.torch_optimizer.step()
        self._t += 1

    def train_step(self, x: np.ndarray, y: np.ndarray, masks: Arrays | None = None) -> float:
        self.module.train()
        self.torch_optimizer.zero_grad(set_to_none=True)
        loss = self._forward_loss(self._x(x), self._y(y), self._masks(masks))
        loss.backward()
        self.torch_optimizer.step()
        self._t += 1
        return float(loss.item())

    def params(self) -> Arrays:
        return {k: p.detach().cpu().numpy().copy() for k, p in zip(self.param_names,
                                                                    self._params)}

    def buffers(self) -> Arrays:
        """running_mean / running_var only: the spec names them; num_batches_tracked is torch's."""
        return {k: self.module.get_buffer(k).detach().cpu().numpy().copy()
                for k in self.buffer_names}

    def opt_state(self) -> dict:
        return topt.export_state(self.torch_optimizer, self.optimizer, self.param_names,
                                 self._params, self._t)
