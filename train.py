"""`python train.py` / `torchrun train.py`: the training program is `minigpt4/cli/train.py`.

    torchrun --nproc-per-node N train.py --cfg-path train_configs/<x>.yaml [--options key=value ...]
    python train.py --cfg-path ...            # one process, CPU or one GPU
"""

import sys

from minigpt4.common.preflight import exit_if_missing

if __name__ == "__main__":
    exit_if_missing(sys.argv[1:])  # a wrong --cfg-path fails in a second, before torch loads

from minigpt4.cli.train import main  # noqa: E402  (after the check above, which needs no heavy import)

if __name__ == "__main__":
    sys.exit(main())
