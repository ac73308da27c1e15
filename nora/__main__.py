import sys

from nora.cli import main

if __name__ == "__main__":  # DDP ranks re-import this module under another name
    sys.exit(main())
