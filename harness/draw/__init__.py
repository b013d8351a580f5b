"""The drawing room: matplotlib pictures from plain data, never from MLflow or a model.

    curves.py   loss curves per trial, curves per sweep value with a band over seeds, final
                metrics and throughput per backend
    volumes.py  slices and marching-cubes surfaces of 3D predictions (sdf)
    layers.py   per-layer diagnostics over steps and against the layer

Imports: harness.names and harness.config (trial labels); matplotlib and scikit-image inside
the functions that draw, so that importing a module of this room costs nothing.
"""
