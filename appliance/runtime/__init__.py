"""The runtime API: a Unix socket speaking HAProxy's CLI dialect (interfaces.md §3).

``commands`` parses and answers the commands (no I/O), ``session`` is the
dialect of one client connection (lines, prompt mode, limits; no I/O either),
``server`` is the asyncio socket around them, and ``client`` is what
``weir ctl`` uses to ask.
"""
