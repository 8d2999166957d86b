"""Ingest: read what the site, the imaging core lab and the pathology lab send, validate every
row, and publish accepted rows and dead letters as events."""
