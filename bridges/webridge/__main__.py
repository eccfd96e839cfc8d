import sys

from bridges.webridge.cli import main

sys.exit(main())
