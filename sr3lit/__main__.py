"`python -m sr3lit ...`: the `sr3lit` command (chapter 19, `sr3lit.cli`). Written by hand: nbdev makes one module per notebook."
import sys

from sr3lit.cli import main

sys.exit(main())
