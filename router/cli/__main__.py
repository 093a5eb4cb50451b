"""`python -m router.cli ...` is `supportrouter ...`."""

import sys

from router.cli.main import main

sys.exit(main())
