import sys

from nora.cli import main

sys.exit(main())
