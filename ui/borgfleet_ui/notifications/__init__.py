"""Notifications: mail (SMTP, HTML + text from templates/mail/) and a signed webhook when a backup,
prune, check or verification fails or is abandoned (one per incident) and when it recovers, and a
daily or weekly digest; also missed scheduled runs, pools and servers over their thresholds, and
instant-recovery sessions started or stopped. docs/service.md, "Notifications".

store: settings and subscriptions; events: from a job's final status to queued deliveries (called
by queue.py); alerts: missed runs, pools, servers and sessions (called by the scheduler and the
recorders of results.py); deliver: the RQ job that sends one delivery; mail: templates and SMTP; digest: its
due time (the scheduler's tick) and content.
"""
