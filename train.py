"""`python train.py` / `torchrun train.py`: the training program is `minigpt4/cli/train.py`.

    torchrun --nproc-per-node N train.py --cfg-path train_configs/<x>.yaml [--options key=value ...]
    python train.py --cfg-path ...            # one process, CPU or one GPU
"""

import sys

from minigpt4.cli.train import main

if __name__ == "__main__":
    sys.exit(main())
