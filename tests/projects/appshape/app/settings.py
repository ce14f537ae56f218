"""Read once, at import, like most applications' settings modules."""

import os

DATABASE_URL = os.environ["DATABASE_URL"]
