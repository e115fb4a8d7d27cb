"""`python app.py`: the web demo is `minigpt4/cli/app.py`.

    python app.py --cfg-path eval_configs/infer_tiny.yaml [--port 7860] [--options key=value ...]
"""

import sys

from minigpt4.common.preflight import exit_if_missing

if __name__ == "__main__":
    exit_if_missing(sys.argv[1:])  # a wrong --cfg-path fails in a second, before torch loads

from minigpt4.cli.app import main  # noqa: E402  (after the check above, which needs no heavy import)

if __name__ == "__main__":
    sys.exit(main())
