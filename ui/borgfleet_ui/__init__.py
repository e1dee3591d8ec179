"""BorgFleet service: Flask app factory."""
import datetime
import decimal
import os
import secrets

from flask import Flask, g, jsonify, request
from flask.json.provider import DefaultJSONProvider

from . import api, auth, db, views
from .config import load_config


class JSONProvider(DefaultJSONProvider):
    @staticmethod
    def default(o):
        if isinstance(o, datetime.datetime):
            return o.isoformat() + ("" if o.tzinfo else "Z")   # DB times are UTC
        if isinstance(o, decimal.Decimal):
            return int(o) if o == o.to_integral_value() else float(o)
        return DefaultJSONProvider.default(o)


def create_app(test_config=None):
    app = Flask(__name__)
    app.json = JSONProvider(app)
    app.config.update(load_config())
    if test_config:
        app.config.update(test_config)
    if not app.config.get("SECRET_KEY"):
        # Sessions then last only as long as this process; production sets BORGFLEET_SECRET_KEY.
        app.config["SECRET_KEY"] = secrets.token_hex(32)
    # Behind TLS (production) set BORGFLEET_SECURE_COOKIES=1 so the session never travels in clear.
    app.config.update(SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax",
                      SESSION_COOKIE_SECURE=os.environ.get("BORGFLEET_SECURE_COOKIES") == "1")
    db.init_app(app)
    app.register_blueprint(auth.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(views.bp)
    app.before_request(auth.enforce)
    app.jinja_env.globals["csrf_token"] = auth.csrf_token

    @app.errorhandler(400)
    @app.errorhandler(403)
    @app.errorhandler(404)
    def _error(e):
        if request.path.startswith("/api/"):
            return jsonify(error=e.description), e.code
        return f"<h1>{e.code}</h1><p>{e.description}</p>", e.code

    @app.teardown_appcontext
    def _close_redis(_exc=None):
        r = g.pop("redis", None)
        if r is not None:
            r.close()

    return app
