"""`python eval_emotion.py` / `torchrun eval_emotion.py`: the evaluation program is `minigpt4/cli/eval_emotion.py`.

    torchrun --nproc-per-node N eval_emotion.py --cfg-path eval_configs/<x>.yaml --dataset <key>
    python eval_emotion.py --cfg-path eval_configs/demo_tiny.yaml --dataset synthetic     # one process, CPU ok
"""

import sys

from minigpt4.cli.eval_emotion import main

if __name__ == "__main__":
    sys.exit(main())
