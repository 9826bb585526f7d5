"""The `cortexedge` command line: one subcommand per stage, stages imported lazily."""
