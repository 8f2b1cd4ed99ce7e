"""The ``ringfence`` command line: parse arguments → call the library → render."""
