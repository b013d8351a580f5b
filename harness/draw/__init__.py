"""The drawing room: pictures from plain data, never from MLflow or a model.

    svg.py      one trial's loss curve, a hand-written SVG (no matplotlib: ~1 ms a trial)
    curves.py   curves per sweep value with a band over seeds, final metrics and throughput
                per backend
    volumes.py  slices and marching-cubes surfaces of 3D predictions (sdf)
    layers.py   per-layer diagnostics over steps and against the layer

Imports: harness.names and harness.config (trial labels); matplotlib and scikit-image inside
the functions that draw, so that importing a module of this room costs nothing.
"""
