import sys

from bitbridge.cli import main

sys.exit(main())
