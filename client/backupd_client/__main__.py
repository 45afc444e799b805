"""`python -m backupd_client` runs backupctl."""

import sys

from .cli import main

sys.exit(main())
