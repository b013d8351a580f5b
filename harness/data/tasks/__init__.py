"""Task registry: every task the harness trains on, loaded offline and normalised.

    >>> from harness.data.tasks import TASKS, load_task
    >>> TASKS["digits"].kind, TASKS["digits"].loss, TASKS["digits"].metric
    ('classification', 'cross_entropy', 'val/accuracy')
    >>> TASKS["digits"].options
    {'n_train': None}
    >>> data = load_task("digits", n_train=200)
    >>> data.x_train.shape, data.input_shape, data.n_outputs
    ((200, 1, 8, 8), (1, 8, 8), 10)

Adding a task is one module with a frozen options dataclass and a loader decorated with
`@register(name, kind=..., loss=..., metrics=..., options=...)` (see `harness.data.tasks.base`),
plus its name in the import line below. A task whose metrics go beyond the loss and
accuracy/MAE (sdf: MAE on the unknown region, surface IoU) registers an
`extra_metrics(x, outputs, y, prefix)` function too.
"""

# Importing a task module registers it. None of them imports scikit-learn or mnist1d at
# the top, so this line costs milliseconds.
from harness.data.tasks import digits, mario, mnist1d, sdf, shapes3d  # noqa: F401
from harness.data.tasks.base import (
    KINDS,
    LOSSES,
    TASKS,
    Dataset,
    TaskInfo,
    default_cache_dir,
    load_task,
    register,
)

__all__ = [
    "KINDS",
    "LOSSES",
    "TASKS",
    "Dataset",
    "TaskInfo",
    "default_cache_dir",
    "load_task",
    "register",
]
