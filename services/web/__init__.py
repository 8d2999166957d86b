"""The adjudication committee's web page: sign-in, the conflict queue, the evidence side by side,
decisions, the audit trail and the study dashboard, rendered on the server.

The routes are thin: they check who is asking, call the same :class:`~services.platform.Platform`
operations the CLI calls, and hand plain view objects to Jinja2 templates that only format.
"""
