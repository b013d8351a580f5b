"""The three backends mirror each other word for word (STYLE 4, issue 14).

The same file names in each backend folder; the same public names in each `nn.py` and
`optim.py` (optim.py's with the same parameters too) and the same exports from each package;
and bad canonical state raises the one `backends.base.StateError`, with the one message, from
every backend. The names are read with ast, so that part needs no framework; the modules
themselves are imported only for the frameworks installed here, and the state tests run on
those (with NumPy alone they still check the type and the message).
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import numpy as np
import pytest

import backends
from backends.archs import build_model
from backends.base import StateError
from backends.init import init_params
from backends.optim import OptimizerSpec
from backends.spec import dropout_masks

ROOT = Path(backends.__file__).parent
NAMES = backends.BACKENDS
INSTALLED = [name for name in NAMES if backends.installed(name)]
EXPORTS = ["NAME", "CAPABILITIES", "build", "device_name", "devices"]  # backends/base.py


def defined(path: Path) -> dict[str, ast.AST]:
    """The public names a module defines at its top level: functions, classes, constants."""
    found = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            found[node.name] = node
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    found[target.id] = node
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            found[node.target.id] = node
    return {k: v for k, v in found.items() if not k.startswith("_")}


def test_every_backend_has_the_same_files():
    files = {name: sorted(p.name for p in (ROOT / name).glob("*.py")) for name in NAMES}
    assert files["numpy"] == files["torch"] == files["jax"], files


@pytest.mark.parametrize("module", ["nn", "optim"])
def test_nn_and_optim_define_the_same_public_names(module):
    names = {name: sorted(defined(ROOT / name / f"{module}.py")) for name in NAMES}
    assert names["numpy"] == names["torch"] == names["jax"], names
    assert names["numpy"], f"{module}.py defines no public name"


def test_optim_functions_take_the_same_parameters():
    def params(name):
        return {f: [a.arg for a in (*node.args.posonlyargs, *node.args.args,
                                    *node.args.kwonlyargs)]
                for f, node in defined(ROOT / name / "optim.py").items()
                if isinstance(node, ast.FunctionDef)}

    assert params("numpy") == params("torch") == params("jax")
    assert params("numpy") == {"build": ["spec", "params"],
                               "load_state": ["spec", "params", "state"],
                               "export_state": ["spec", "params", "state"],
                               "step": ["spec", "params", "grads", "state"]}


def test_packages_export_the_same_names():
    for name in NAMES:
        tree = ast.parse((ROOT / name / "__init__.py").read_text())
        (exports,) = [ast.literal_eval(node.value) for node in tree.body
                      if isinstance(node, ast.Assign)
                      and any(getattr(t, "id", None) == "__all__" for t in node.targets)]
        assert sorted(exports) == sorted(EXPORTS), name
        assert sorted(defined(ROOT / name / "__init__.py")) == sorted(EXPORTS), name


@pytest.mark.parametrize("name", INSTALLED)
@pytest.mark.parametrize("module", ["nn", "optim"])
def test_imported_modules_have_the_names_ast_sees(name, module):
    """dir() agrees with the ast walk: the module's own public functions and classes are
    those its source defines, none made at run time."""
    mod = importlib.import_module(f"backends.{name}.{module}")
    own = {k for k, v in vars(mod).items() if not k.startswith("_")
           and getattr(v, "__module__", None) == mod.__name__}
    assert own == {k for k, node in defined(ROOT / name / f"{module}.py").items()
                   if isinstance(node, (ast.FunctionDef, ast.ClassDef))}


# ----------------------------------------------------------------------------- bad state

SPEC = build_model("mlp", (4,), 3, "cross_entropy", depth=1, width=4, batchnorm=True,
                   dropout=0.5)
ADAM = OptimizerSpec(name="adam", lr=0.01)


def _state():
    params, buffers = init_params(SPEC, "he", np.random.default_rng(0))
    x = np.random.default_rng(1).standard_normal((5, 4)).astype(np.float32)
    y = np.arange(5) % 3
    return params, buffers, x, y, dropout_masks(SPEC, 5, np.random.default_rng(2))


def _opt_state(params):
    return {"step": 2, "slots": {s: {k: np.zeros_like(v) for k, v in params.items()}
                                 for s in ("m", "v")}}


def _without(d, key):
    return {k: v for k, v in d.items() if k != key}


def _build(name, params, buffers, opt_state=None):
    return backends.load(name).build(SPEC, params, buffers, ADAM, opt_state=opt_state)


def _params_missing(name, params, buffers, x, y, masks):
    _build(name, _without(params, "head.bias"), buffers)


def _params_unexpected(name, params, buffers, x, y, masks):
    _build(name, {**params, "head.scale": np.ones(3, np.float32)}, buffers)


def _params_misshapen(name, params, buffers, x, y, masks):
    _build(name, {**params, "head.weight": params["head.weight"].T}, buffers)


def _buffers_missing(name, params, buffers, x, y, masks):
    _build(name, params, _without(buffers, "layer1.bn.running_var"))


def _slot_missing(name, params, buffers, x, y, masks):
    state = _opt_state(params)
    del state["slots"]["v"]
    _build(name, params, buffers, state)


def _slot_unexpected(name, params, buffers, x, y, masks):
    state = _opt_state(params)
    state["slots"]["G"] = state["slots"]["m"]
    _build(name, params, buffers, state)


def _slot_keys(name, params, buffers, x, y, masks):
    state = _opt_state(params)
    state["slots"]["m"] = _without(state["slots"]["m"], "layer1.fc.weight")
    _build(name, params, buffers, state)


def _slot_misshapen(name, params, buffers, x, y, masks):
    state = _opt_state(params)
    state["slots"]["v"]["head.bias"] = np.zeros(4, np.float32)
    _build(name, params, buffers, state)


def _step_negative(name, params, buffers, x, y, masks):
    _build(name, params, buffers, {**_opt_state(params), "step": -1})


def _mask_missing(name, params, buffers, x, y, masks):
    _build(name, params, buffers).loss_and_grads(x, y)


def _mask_unexpected(name, params, buffers, x, y, masks):
    _build(name, params, buffers).train_step(x, y, {**masks, "head": np.ones((5, 4))})


def _mask_misshapen(name, params, buffers, x, y, masks):
    _build(name, params, buffers).forward(x, train=True, masks={"layer1.drop": np.ones((5, 3))})


def _grads_missing(name, params, buffers, x, y, masks):
    _build(name, params, buffers).apply_gradients(_without(params, "layer1.bn.bias"))


def _grads_misshapen(name, params, buffers, x, y, masks):
    _build(name, params, buffers).apply_gradients({**params, "head.bias": np.ones(2)})


BAD_STATE = [_params_missing, _params_unexpected, _params_misshapen, _buffers_missing,
             _slot_missing, _slot_unexpected, _slot_keys, _slot_misshapen, _step_negative,
             _mask_missing, _mask_unexpected, _mask_misshapen, _grads_missing,
             _grads_misshapen]


def _errors(case) -> dict[str, BaseException]:
    errors = {}
    for name in INSTALLED:
        with pytest.raises(Exception) as info:
            case(name, *_state())
        errors[name] = info.value
    return errors


@pytest.mark.parametrize("case", BAD_STATE, ids=lambda f: f.__name__.strip("_"))
def test_bad_canonical_state_raises_one_error_with_one_message(case):
    errors = _errors(case)
    for name, err in errors.items():
        assert type(err) is StateError, f"{name}: {type(err).__name__}: {err}"
    messages = {name: str(err) for name, err in errors.items()}
    assert len(set(messages.values())) == 1, messages


def _input_misshapen(name, params, buffers, x, y, masks):
    _build(name, params, buffers).evaluate(x[:, :3], y)


def _labels_misshapen(name, params, buffers, x, y, masks):
    _build(name, params, buffers).train_step(x, y[:, None], masks)


def _rng_unknown(name, params, buffers, x, y, masks):
    backends.load(name).build(SPEC, params, buffers, ADAM, rng="numpy")


@pytest.mark.parametrize("case", [_input_misshapen, _labels_misshapen, _rng_unknown],
                         ids=lambda f: f.__name__.strip("_"))
def test_bad_arguments_raise_one_value_error_with_one_message(case):
    errors = _errors(case)
    for name, err in errors.items():
        assert type(err) is ValueError, f"{name}: {type(err).__name__}: {err}"
    messages = {name: str(err) for name, err in errors.items()}
    assert len(set(messages.values())) == 1, messages


def test_the_messages_name_what_is_wrong():
    params, buffers, x, y, masks = _state()
    with pytest.raises(StateError, match=r"params: missing \['head.bias'\], unexpected \[\]"):
        _params_missing("numpy", params, buffers, x, y, masks)
    with pytest.raises(StateError, match=r"optimizer 'adam' keeps slots \['m', 'v'\]"):
        _slot_missing("numpy", params, buffers, x, y, masks)
    with pytest.raises(StateError, match=r"dropout layer 'layer1.drop'.*rng='canonical'"):
        _mask_missing("numpy", params, buffers, x, y, masks)
    with pytest.raises(StateError, match=r"mask shape \(5, 3\), expected \(5, 4\)"):
        _mask_misshapen("numpy", params, buffers, x, y, masks)
