"""`python -m minigpt4.infer`: see minigpt4/infer/__init__.py."""

import sys

from minigpt4.infer.cli import main

if __name__ == "__main__":
    sys.exit(main())
