import sys

from nora.cli import main
from nora.exiting import skip_exit_collection

if __name__ == "__main__":  # DDP ranks re-import this module under another name
    skip_exit_collection()
    sys.exit(main())
