"""One module per `stream-app` sub-command: `add_parser(sub)` and `run(args, settings)`."""
