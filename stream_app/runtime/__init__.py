"""The worker process: its dependencies per use case, the Faust app wired from them, and the
run loop (`stream-app worker`)."""
