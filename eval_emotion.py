"""`python eval_emotion.py` / `torchrun eval_emotion.py`: the evaluation program is `minigpt4/cli/eval_emotion.py`.

    torchrun --nproc-per-node N eval_emotion.py --cfg-path eval_configs/<x>.yaml --dataset <key>
    python eval_emotion.py --cfg-path eval_configs/demo_tiny.yaml --dataset synthetic     # one process, CPU ok
"""

import sys

from minigpt4.common.preflight import exit_if_missing

if __name__ == "__main__":
    exit_if_missing(sys.argv[1:])  # a wrong --cfg-path fails in a second, before torch loads

from minigpt4.cli.eval_emotion import main  # noqa: E402  (after the check above, which needs no heavy import)

if __name__ == "__main__":
    sys.exit(main())
