"""`python -m jetad.cli`."""

from jetad.cli import app

app()
