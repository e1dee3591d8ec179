"""Notifications: mail (SMTP, HTML + text from templates/mail/) and a signed webhook when a backup,
prune, check or verification fails or is abandoned (one per incident) and when it recovers, and a
daily or weekly digest. docs/service.md, "Notifications".

store: settings and subscriptions; events: from a job's final status to queued deliveries (called
by queue.py); deliver: the RQ job that sends one delivery; mail: templates and SMTP; digest: its
due time (the scheduler's tick) and content.
"""
