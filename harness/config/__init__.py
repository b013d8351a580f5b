"""Reading an experiment file (SPEC 4.4): the schema, the strict reader, the expansion into
trials.

    schema.py    frozen dataclasses of the file, with commented defaults; `model:` and
                 `optimizer:` build on backends/archs.py `Knobs` and backends/optim.py
                 `OptimizerSpec`, so each knob is declared once
    validate.py  safe YAML (duplicate keys refused), `--set` overrides, the Checker that
                 fills the dataclasses and collects every error with its key path
    expand.py    the checks of a whole file, a trial (its resolved config and hash)
    tuning.py    `tune:`: the values to try, their checks, trials derived from others
    loader.py    `load`: the whole file checked at once, then the grid x backends x devices
                 x seeds

Imports: backends/, harness.names, harness.errors and harness.data (the task and
augmentation registries, whose names and options a file is checked against).
"""

from harness.config.expand import Trial, filled, resolved, trial_hash
from harness.config.loader import load
from harness.errors import ConfigError, ConfigErrors

__all__ = ["ConfigError", "ConfigErrors", "Trial", "filled", "load", "resolved", "trial_hash"]
