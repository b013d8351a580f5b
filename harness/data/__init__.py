"""The data room: tasks (harness.data.tasks: datasets generated or shipped, never downloaded)
and augmentation (harness.data.augment: a registry and its 2D and 3D ops), all on the host.

Imports: numpy (scikit-learn, mnist1d and scipy inside the loaders that need them),
harness.names and harness.errors.
"""
