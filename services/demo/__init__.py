"""Demo and benchmark trials: transfer files built to known answers."""
