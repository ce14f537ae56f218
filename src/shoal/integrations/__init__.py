"""Framework adapters: a stack's own idea of "the test database", turned into shoal targets.

They sit above :mod:`shoal.targets` (they resolve servers and build plans the same way)
and below the plugin and the command line, which register and render them.
"""
