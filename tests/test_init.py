"""The initialisation rules against their formulas, written out here (SPEC 2, backends/init.py).

Parity tests start every backend from the same canonical weights, so a wrong rule passes all
of them: these tests are the only place that checks the numbers. Each case draws one large
layer and compares the weights' RMS with the rule's std, fan_in and fan_out counted here by
hand from the layer's geometry.

Tolerance. For n independent N(0, s^2) draws, m2 = mean(w^2) has mean s^2 and variance
2 s^4 / n, so rms = sqrt(m2) = s (1 + e) with e ~ N(0, 1 / (2n)) to first order: the
standard error of rms / s is 1 / sqrt(2n). We allow Z = 5 standard errors (a false alarm
about once in 1.7 million draws; the seed is fixed, so the outcome is too). With n ~ 30 000
that is 2 %, while the smallest error the cases are built to show is a factor 0.71.
The mean's standard error is s / sqrt(n); the kurtosis m4 / m2^2, 3 for a normal
distribution (1.8 for a uniform one), has standard error sqrt(24 / n).
"""

import math

import numpy as np
import pytest
from conftest import needs

from backends import spec as S
from backends.init import INITS, fans, init_params, weight_std

Z = 5  # standard errors allowed

# The rules, as SPEC 2 states them.
RULES = {
    "gaussian": lambda fan_in, fan_out: 0.01,
    "lecun": lambda fan_in, fan_out: 1 / math.sqrt(fan_in),
    "xavier": lambda fan_in, fan_out: math.sqrt(2 / (fan_in + fan_out)),
    "he": lambda fan_in, fan_out: math.sqrt(2 / fan_in),
}

# name -> (layer, input shape, fan_in, fan_out), the fans counted by hand: a linear layer's
# are its in and out features; a convolution's in_channels x kernel volume and out_channels x
# kernel volume. A transposed convolution's weight is (in, out, *k), and its fan_in is still
# in_channels x kernel volume: the roles as the layer is used (backends/init.py), not torch's
# reading of the weight layout (test_transposed_fans_are_torchs_swapped). in != out and
# kernels with several different sides, so a fan counted from the wrong axis shows.
CASES = {
    "linear": (S.Linear(name="l", in_features=300, out_features=120), (300,), 300, 120),
    "conv1d": (S.Conv(name="l", ndim=1, in_channels=64, out_channels=96, kernel=5),
               (64, 32), 64 * 5, 96 * 5),
    "conv2d": (S.Conv(name="l", ndim=2, in_channels=24, out_channels=80, kernel=(3, 5),
                      stride=2, padding=1, dilation=2),  # geometry other than k: no fan
               (24, 16, 16), 24 * 3 * 5, 80 * 3 * 5),
    "conv3d": (S.Conv(name="l", ndim=3, in_channels=12, out_channels=40, kernel=(3, 4, 5)),
               (12, 8, 8, 8), 12 * 3 * 4 * 5, 40 * 3 * 4 * 5),
    "conv_transpose1d": (S.ConvTranspose(name="l", ndim=1, in_channels=96, out_channels=64,
                                         kernel=5, stride=2),
                         (96, 16), 96 * 5, 64 * 5),
    "conv_transpose2d": (S.ConvTranspose(name="l", ndim=2, in_channels=80, out_channels=24,
                                         kernel=(3, 5), stride=2, output_padding=1),
                         (80, 8, 8), 80 * 3 * 5, 24 * 3 * 5),
    "conv_transpose3d": (S.ConvTranspose(name="l", ndim=3, in_channels=40, out_channels=12,
                                         kernel=(3, 4, 5)),
                         (40, 4, 4, 4), 40 * 3 * 4 * 5, 12 * 3 * 4 * 5),
}


def one_layer(layer, input_shape):
    return S.ModelSpec(arch="one", input_shape=input_shape, loss="mse",
                       body=S.Sequential(name="net", layers=(layer,)))


def check_normal(w, std, what):
    """w's draws are N(0, std^2), within Z standard errors of each statistic."""
    w = w.astype(np.float64).ravel()
    n = w.size
    assert n >= 20_000, f"{what}: too few draws ({n}) for a tight test"
    m2 = np.mean(w * w)
    rms = math.sqrt(m2)
    assert abs(rms / std - 1) < Z / math.sqrt(2 * n), (
        f"{what}: RMS {rms:.6g}, the rule says {std:.6g} (ratio {rms / std:.4f}, allowed "
        f"1 +- {Z / math.sqrt(2 * n):.4f})")
    assert abs(w.mean()) < Z * std / math.sqrt(n), f"{what}: mean {w.mean():.3g}"
    kurtosis = np.mean(w ** 4) / m2 ** 2
    assert abs(kurtosis - 3) < Z * math.sqrt(24 / n), f"{what}: kurtosis {kurtosis:.3f}, not 3"


@pytest.mark.parametrize("scheme", INITS)
@pytest.mark.parametrize("case", list(CASES))
def test_weight_std_follows_the_rule(scheme, case):
    layer, input_shape, fan_in, fan_out = CASES[case]
    spec = one_layer(layer, input_shape)
    assert len(spec.output_shape) == len(input_shape)  # a valid geometry
    params, buffers = init_params(spec, scheme, np.random.default_rng(0))
    assert buffers == {}
    pshapes = S.param_shapes(spec)[0]
    w, b = params["l.weight"], params["l.bias"]
    assert w.dtype == b.dtype == np.float32
    assert w.shape == pshapes["l.weight"] and b.shape == pshapes["l.bias"]
    check_normal(w, RULES[scheme](fan_in, fan_out), f"{scheme} {case}")
    np.testing.assert_array_equal(b, 0)


@pytest.mark.parametrize("case", list(CASES))
def test_fans_are_counted_as_documented(case):
    layer, _, fan_in, fan_out = CASES[case]
    assert fans(layer) == (fan_in, fan_out)


@pytest.mark.parametrize("std", [0.01, 0.05, 1.0])
def test_gaussian_takes_its_std(std):
    layer, input_shape, fan_in, fan_out = CASES["conv2d"]
    params, _ = init_params(one_layer(layer, input_shape), "gaussian",
                            np.random.default_rng(1), std=std)
    check_normal(params["l.weight"], std, f"gaussian std={std}")


def test_he_is_the_papers_rule_not_the_lectures_typo():
    """The lecture's `randn(n) / sqrt(2.0/n)` would give std sqrt(n / 2), not sqrt(2 / n)."""
    assert weight_std("he", 50, 10) == pytest.approx(0.2)
    assert weight_std("lecun", 100, 10) == pytest.approx(0.1)
    assert weight_std("xavier", 150, 50) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="unknown init 'kaiming'"):
        weight_std("kaiming", 10, 10)


def test_biases_zero_batchnorm_constant_and_every_layer_drawn():
    """A small model with every parameter kind: biases 0, BatchNorm 1 and 0, no bias where
    the layer has none; each weight drawn with its own layer's rule."""
    layers = (S.Conv(name="c", ndim=2, in_channels=3, out_channels=8, kernel=3, bias=False),
              S.BatchNorm(name="bn", num_features=8, ndim=2),
              S.ConvTranspose(name="up", ndim=2, in_channels=8, out_channels=4, kernel=2,
                              stride=2),
              S.Flatten(name="f"), S.Linear(name="fc", in_features=4 * 12 * 12, out_features=5))
    spec = S.ModelSpec(arch="mix", input_shape=(3, 8, 8), loss="mse",
                       body=S.Sequential(name="net", layers=layers))
    params, buffers = init_params(spec, "he", np.random.default_rng(2))
    pshapes, bshapes = S.param_shapes(spec)
    assert list(params) == list(pshapes) and list(buffers) == list(bshapes)
    assert "c.bias" not in params
    for k, v in {**params, **buffers}.items():
        assert v.dtype == np.float32 and v.shape == {**pshapes, **bshapes}[k], k
    for k in ("up.bias", "fc.bias", "bn.bias"):
        np.testing.assert_array_equal(params[k], 0)
    np.testing.assert_array_equal(params["bn.weight"], 1)
    np.testing.assert_array_equal(buffers["bn.running_mean"], 0)
    np.testing.assert_array_equal(buffers["bn.running_var"], 1)
    # 216 and 128 draws: the RMS to Z / sqrt(2n) (24 %, 31 %) still tells sqrt(2) apart
    for k, fan_in in (("c.weight", 3 * 3 * 3), ("up.weight", 8 * 2 * 2)):
        w = params[k].astype(np.float64)
        ratio = math.sqrt(np.mean(w * w)) / math.sqrt(2 / fan_in)
        assert abs(ratio - 1) < Z / math.sqrt(2 * w.size), f"{k}: ratio {ratio:.3f}"


@needs("torch")
@pytest.mark.parametrize("case", list(CASES))
def test_transposed_fans_are_torchs_swapped(case):
    """torch counts fans from the weight's layout, (axis 1) x kernel volume in and (axis 0)
    x kernel volume out. For a linear layer and a convolution that agrees with ours; for a
    transposed convolution, whose weight is (in, out, *k), torch's fan_in is out_channels x
    kernel volume, so its kaiming/xavier-by-fan_in differ from ours there (Xavier is
    symmetric in the two fans, so only LeCun and He do)."""
    import torch

    layer, input_shape, fan_in, fan_out = CASES[case]
    shape = S.param_shapes(one_layer(layer, input_shape))[0]["l.weight"]
    torch_fans = torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))
    if "transpose" in case:
        assert torch_fans == (fan_out, fan_in)
    else:
        assert torch_fans == (fan_in, fan_out)
