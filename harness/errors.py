"""The one dialect of configuration errors: values, never strings parsed back.

Every checker (the schema's, a task's options, the augmentation registry's, the preflight)
returns or raises `ConfigError`s. A checker below the file reader does not know the file;
it leaves `source` empty and the reader fills it in with `located`. The CLI prints them all
at once with `refuse`.
"""

from __future__ import annotations

import dataclasses
import difflib
import sys
from dataclasses import dataclass

EXIT_USAGE = 2


@dataclass(frozen=True)
class ConfigError:
    source: str  # the file, or "--set KEY=VALUE"; "" until the reader fills it in
    path: str  # the key path, e.g. "optimizer.lr" or "sweep.optimizer[1].name"
    message: str  # what was expected and what was found, and a suggestion

    def __str__(self) -> str:
        return f"{self.source}: {self.path or '<top>'}: {self.message}"

    def under(self, prefix: str) -> ConfigError:
        """The same error with its path below `prefix` ("augment[1]" -> "sweep.augment[0][1]"
        under "sweep.augment[0]" when the list it checked sits there)."""
        return dataclasses.replace(self, path=f"{prefix}{self.path}")


class ConfigErrors(Exception):
    """All the errors of one file, raised together."""

    def __init__(self, errors: list[ConfigError]):
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


def located(errors: list[ConfigError], source: str) -> list[ConfigError]:
    """Errors from a checker that did not know the file, with the file filled in."""
    return [e if e.source else dataclasses.replace(e, source=source) for e in errors]


def suggest(word, candidates) -> str:
    """'; did you mean 'x'?' for the closest candidate, or ''."""
    close = difflib.get_close_matches(str(word), [str(c) for c in candidates], n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def describe(value) -> str:
    """What was found, in words: 'a number -0.1', 'a list', 'nothing (null)'."""
    if value is None:
        return "nothing (null)"
    kind = {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "a list", dict: "a mapping"}.get(type(value), type(value).__name__)
    shown = repr(value) if not isinstance(value, (list, dict)) or len(repr(value)) < 60 else ""
    return f"{kind} {shown}".strip()


def refuse(errors: list[ConfigError]) -> int:
    """Print every error and say that nothing ran; the exit code for a bad config."""
    n = len(errors)
    print(f"refused: {n} error{'s' if n != 1 else ''} in the configuration; nothing was run "
          "or written", file=sys.stderr)
    for e in errors:
        print(f"  {e}", file=sys.stderr)
    return EXIT_USAGE
