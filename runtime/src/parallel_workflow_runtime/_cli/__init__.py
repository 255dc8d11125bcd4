"""The command line, on top of every other layer: `entry` (the checks before any import),
`cli` (the parser, one small function per command), `commands` (what each command does),
`check`, `engine_edits` and `views` (what the terminal shows).
"""
