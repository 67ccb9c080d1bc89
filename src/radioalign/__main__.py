"""``python -m radioalign``: the ``radioalign`` command (see ``radioalign.survey.cli``)."""

import sys

from radioalign.survey.cli import main

if __name__ == "__main__":
    sys.exit(main())
