import sys

from emogrid.cli import main

sys.exit(main())
