"""The protocol's rules as pure functions: frames in, frames out, parameters from the rule set.

No rule touches the bus, the clock or the filesystem. Module names follow the rule ids.
A per-tract rule adds its columns to the tract frame it is given and keeps that frame's rows
and order, so the engine can set the rules' results side by side instead of joining them.
"""

TRACT_KEY = ("subject_id", "tract_id")
