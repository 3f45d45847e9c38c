"""``python -m app`` runs the ``cloud-job-metrics`` command."""

import sys

from app.commands.main import main

sys.exit(main())
