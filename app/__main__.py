"""``python -m app`` runs the ``cloud-job-metrics`` command."""

import sys

from app.cli import main

sys.exit(main())
