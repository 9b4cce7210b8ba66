"""Command-line entry points: ``vidfix <command>``. Each module is thin: parse, build a config, call the library."""
