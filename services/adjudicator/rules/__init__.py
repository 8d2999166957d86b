"""The protocol's rules as pure functions: frames in, frames out, parameters from the rule set.

No rule touches the bus, the clock or the filesystem. Module names follow the rule ids.
"""

TRACT_KEY = ("subject_id", "tract_id")
