"""The conversation core: what every front-end (app, REPL, pipe) does the same way.

Plain Python: no Textual or prompt_toolkit imports, so it is tested on its own
against the fake engine. Front-ends keep only their widgets, keys and output.
"""
