"""``python -m loopline`` is the ``loopline`` command."""

from loopline.cli import main

main()
