"""`python app.py`: the web demo is `minigpt4/cli/app.py`.

    python app.py --cfg-path eval_configs/infer_tiny.yaml [--port 7860] [--options key=value ...]
"""

import sys

from minigpt4.cli.app import main

if __name__ == "__main__":
    sys.exit(main())
