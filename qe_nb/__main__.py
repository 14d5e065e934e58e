"""``python -m qe_nb`` runs the ``qe-nb`` command."""

import sys

from qe_nb.cli import main

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
