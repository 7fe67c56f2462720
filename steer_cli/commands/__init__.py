"""The CLI's commands, one module each; they parse, call the core and print."""
