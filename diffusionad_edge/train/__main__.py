"""``python -m diffusionad_edge.train ARGS`` is ``dae train ARGS``: the program torchrun starts.

    torchrun --nproc-per-node 4 -m diffusionad_edge.train --data /data/mvtec --category bottle ...
"""

import sys

from ..cli.main import main

if __name__ == "__main__":
    sys.argv = [sys.argv[0], "train", *sys.argv[1:]]
    main()
