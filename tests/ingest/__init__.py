"""Ingest: the requirements of DATA_TRANSFER.md, proved against the real CLI and real files."""
