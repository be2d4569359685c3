"""Shipped weight files; installed as the package ``deblur_cli._weights`` (see pyproject.toml)."""
