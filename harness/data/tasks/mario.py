"""`mario`: predict a platformer character's next horizontal position from the last three.

The generative model, simulated for many independent players at once, one frame at a time
(units: pixels and frames, with speeds of the order of Super Mario Bros.' walk and run):

- Intent. Each player holds an intent, a direction (right, left, or stand still) and a gait
  (walk or run). Every frame the intent is redrawn with probability `p_switch`, so intents
  last a geometric number of frames; right is likelier than left, as in a level that
  scrolls right. Redrawing can reverse the direction (a turnaround) or change the gait.
- Ground physics. On the ground the speed v moves toward the intent's target speed
  (direction x gait speed) by at most `accel` per frame when speeding up, `friction` when
  slowing down or stopping, and `skid` when the target points against the motion. So
  speed changes are gradual and |v| <= `run_speed` always.
- Jumps. A grounded player jumps with probability `p_jump` per frame and stays airborne
  for a uniform number of frames in [`air_min`, `air_max`]. In the air v is frozen: the
  jump carries the take-off momentum, and the intent may change but acts only on landing.
- Position. x_{t+1} = x_t + v_t, starting at x_0 ~ U(0, `level_width`) with a random
  grounded speed. Observed positions add i.i.d. Gaussian noise of std `noise`.

Each sample is one window of four consecutive observed positions from its own
trajectory, at a uniformly random frame: input (x_{t-2}, x_{t-1}, x_t), shape (3,); target
x_{t+1}, shape (1,). Absolute positions, as the SPEC says; normalisation with one scalar
mean/std of the training inputs (the same for the target: it is the same quantity) takes
care of scale and keeps the map linear-friendly. Unlike digits and mnist1d, the trial seed
drives generation here: each seed sees fresh trajectories, so error bars over seeds
include the data's variation. Train, val and test use independent child streams of that
seed, so changing `n_train` leaves the validation set unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.data.tasks.base import Dataset, register, standardise

WINDOW = 4  # three inputs and the target


@dataclass(frozen=True)
class Physics:
    """Constants of the generative model (pixels, frames)."""

    walk_speed: float = 1.5  # target speed when walking, px/frame
    run_speed: float = 2.5  # target speed when running: the maximum speed
    accel: float = 0.06  # speed gained per grounded frame when speeding up
    friction: float = 0.1  # speed lost per grounded frame when slowing down or stopping
    skid: float = 0.2  # speed lost per grounded frame when turning around
    p_switch: float = 0.06  # chance per frame that the intent is redrawn
    p_right: float = 0.55  # intent probabilities: right, left, stand still (the rest)
    p_left: float = 0.25
    p_run: float = 0.5  # chance a moving intent runs rather than walks
    p_jump: float = 0.02  # chance per grounded frame of a jump
    air_min: int = 8  # frames airborne per jump, inclusive range
    air_max: int = 24
    level_width: float = 256.0  # start positions are uniform in [0, level_width)


@dataclass(frozen=True)
class Trajectories:
    """Noise-free simulation output for N players over T frames."""

    x: np.ndarray  # (N, T) float64 positions
    v: np.ndarray  # (N, T) float64 speed applied between frame t and t+1
    grounded: np.ndarray  # (N, T) bool, on the ground at frame t: only then may v change


def simulate(
    n: int, frames: int, rng: np.random.Generator, physics: Physics = Physics()
) -> Trajectories:
    """Simulate `n` independent players for `frames` frames (vectorised over players)."""
    p = physics
    x = np.empty((n, frames))
    v = np.empty((n, frames))
    on_ground = np.empty((n, frames), dtype=bool)

    def draw_target(m: int) -> np.ndarray:  # (m,) target speeds from freshly drawn intents
        u = rng.random(m)
        direction = np.where(u < p.p_right, 1.0, np.where(u < p.p_right + p.p_left, -1.0, 0.0))
        gait = np.where(rng.random(m) < p.p_run, p.run_speed, p.walk_speed)
        return direction * gait

    pos = rng.uniform(0.0, p.level_width, n)
    speed = rng.uniform(-p.run_speed, p.run_speed, n)
    target = draw_target(n)
    air_left = np.zeros(n, dtype=np.int64)  # frames until landing; 0 on the ground
    for t in range(frames):
        switch = rng.random(n) < p.p_switch
        target = np.where(switch, draw_target(n), target)
        grounded = air_left == 0
        # Ground physics: step toward the target speed at the rate for the situation.
        rate = np.where(
            speed * target < 0,
            p.skid,
            np.where(np.abs(target) > np.abs(speed), p.accel, p.friction),
        )
        speed = np.where(grounded, speed + np.clip(target - speed, -rate, rate), speed)
        # Take-off after the ground update: the jump keeps the speed it left the ground with.
        jump = grounded & (rng.random(n) < p.p_jump)
        air_left = np.where(jump, rng.integers(p.air_min, p.air_max + 1, n), air_left)
        x[:, t] = pos
        v[:, t] = speed
        on_ground[:, t] = grounded
        pos = pos + speed
        air_left = np.maximum(air_left - 1, 0)
    return Trajectories(x=x, v=v, grounded=on_ground)


def make_windows(
    n: int, frames: int, noise: float, rng: np.random.Generator, physics: Physics = Physics()
) -> tuple[np.ndarray, np.ndarray]:
    """`n` samples, one window per trajectory: x (n, 3) and y (n, 1), float64, raw pixels."""
    traj = simulate(n, frames, rng, physics)
    start = rng.integers(0, frames - WINDOW + 1, n)  # (n,)
    idx = start[:, None] + np.arange(WINDOW)  # (n, 4)
    window = np.take_along_axis(traj.x, idx, axis=1)  # (n, 4)
    window = window + noise * rng.standard_normal(window.shape)
    return window[:, :3], window[:, 3:]


@dataclass(frozen=True)
class MarioOptions:
    n_train: int = 4000  # training windows
    n_val: int = 1000  # validation windows
    n_test: int = 1000  # test windows; 0 for none
    noise: float = 0.05  # std of the observation noise, px
    frames: int = 64  # simulated frames per trajectory; windows start anywhere in them

    def __post_init__(self) -> None:
        if self.n_train < 1 or self.n_val < 1 or self.n_test < 0:
            raise ValueError("n_train and n_val must be >= 1 and n_test >= 0")
        if self.noise < 0:
            raise ValueError(f"noise must be >= 0, got {self.noise}")
        if self.frames < WINDOW:
            raise ValueError(f"frames must be >= {WINDOW}, got {self.frames}")


@register("mario", kind="regression", loss="mse", metrics=("val/mae",), options=MarioOptions)
def load(options: MarioOptions, *, seed: int, cache_dir: Path) -> Dataset:
    """Next horizontal position of a simulated platformer player (regression, MSE)."""
    del cache_dir  # generated in milliseconds; nothing to cache
    o = options
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3)]
    x_tr, y_tr = make_windows(o.n_train, o.frames, o.noise, streams[0])
    x_va, y_va = make_windows(o.n_val, o.frames, o.noise, streams[1])
    x_te, y_te = make_windows(max(o.n_test, 1), o.frames, o.noise, streams[2])
    # One scalar for all three inputs and the target: they are the same quantity, and a
    # shared scale keeps x_{t+1} ~ 2 x_t - x_{t-1} true in normalised units.
    mean, std, (x_tr, x_va, x_te) = standardise(x_tr, x_va, x_te, axes=(0, 1))
    mean, std = mean.reshape(()), std.reshape(())  # (1,) -> ()
    y_tr, y_va, y_te = (((y - mean) / std).astype(np.float32) for y in (y_tr, y_va, y_te))
    has_test = o.n_test > 0
    return Dataset(
        name="mario",
        kind="regression",
        x_train=x_tr,
        y_train=y_tr,
        x_val=x_va,
        y_val=y_va,
        x_test=x_te if has_test else None,
        y_test=y_te if has_test else None,
        n_outputs=1,
        x_mean=mean,
        x_std=std,
        y_mean=mean,
        y_std=std,
        info={"seed": seed, "units": "px"},
    )
