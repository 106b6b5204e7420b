"""`python -m benchmarks [OPTIONS]`: the bench command without cli.py (see benchmarks/command.py)."""
import sys

from .command import main

sys.exit(main())
