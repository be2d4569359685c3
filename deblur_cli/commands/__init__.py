"""One small module per ``deblur`` subcommand; each is a thin layer over the library API."""
