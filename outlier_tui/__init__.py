"""Outlier's user interfaces: the Textual chat app, the plain REPL and the CLI."""
