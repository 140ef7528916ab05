import sys

from latte.cli import main

sys.exit(main())
