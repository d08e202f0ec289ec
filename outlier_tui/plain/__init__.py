"""`outlier chat --plain`: a line-mode chat for SSH, tmux scrollback and shell pipes.

session.py is the interactive prompt, render.py streams answers with
highlighted code blocks, commands.py holds the slash commands, pipe.py the
non-interactive mode and main.py wires them to the CLI arguments.
"""
