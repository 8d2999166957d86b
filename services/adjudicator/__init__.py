"""The adjudicator: merges evidence events into per-tract and per-patient outcomes under the
protocol's versioned rule set, raises conflicts, and applies the committee's decisions."""
