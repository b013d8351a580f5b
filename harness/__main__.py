import os
import sys

from harness.cli import main

try:
    code = main()
    sys.stdout.flush()
except BrokenPipeError:  # `... | head`: the reader left; say nothing more
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    code = 0
raise SystemExit(code)
