"""`python -m mdeploy` runs the CLI, for environments without the console script on PATH."""

from mdeploy.cli.app import main

main()
