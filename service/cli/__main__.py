"""`python -m service.cli`: the `clonefinder` command."""

from service.cli import main

main()
