"""``python -m workbench.cli``: the same as the ``workbench`` console script."""

from workbench.cli.app import main

main()
