"""The service's tests: their fixtures (ui_env, app, client, db, redis, users, api, start_worker) are
in tests/lib/ui_fixtures.py, registered by the root conftest so every tier shares one service."""
