"""The ``workbench`` command line, the outer shell over the core and the leaves.

``app`` holds run, eval, validate and list; ``reward`` the reward subcommands (check, synth with
the Eureka search, automc, refine, perceptual) and their console views; ``llm`` the embedded LLM
server; ``errors`` how every command reports a user mistake (one message, exit 2, no traceback).
Only this package may mount leaf modules' features on the console; the leaves print nothing.
"""

from workbench.cli.app import app, main

__all__ = ["app", "main"]
