"`python -m sr3lit ...`: the `sr3lit` command (chapter 19, `sr3lit.cli`). Written by hand: nbdev makes one module per notebook."
import sys

from sr3lit.cli import main

if __name__ == '__main__':          # not when imported (multiprocessing's spawn, for one, imports the main module)
    sys.exit(main())
