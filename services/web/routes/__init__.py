"""One module per page family; each route parses its input, calls the platform and renders."""
