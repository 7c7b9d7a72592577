"""`python -m gdeeper` runs the `gdeeper` command."""

from gdeeper.cli import main

main()
