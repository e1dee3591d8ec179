"""What the fleet areas share: the errors callers turn into responses, field checks, paging."""
from ..contract import ContractError

MAX_LIMIT = 200


class Invalid(ValueError):
    """The request is refused (-> 400); str() is the message for the user."""


class NotFound(LookupError):
    """No such row (-> 404)."""


class Forbidden(PermissionError):
    """The caller's role may not make this change (-> 403)."""


def field(data, key, default=None, required=False):
    """data[key], or default when absent or null; Invalid if required and there is neither."""
    if key not in data or data[key] is None:
        if required and default is None:
            raise Invalid(f"{key} is required")
        return default
    return data[key]


def matching(regex, value, what):
    if not isinstance(value, str) or not regex.fullmatch(value):
        raise Invalid(f"{what} {value!r} is not valid")
    return value


def int_between(value, what, lo, hi):
    try:
        v = int(value)
    except (TypeError, ValueError):
        raise Invalid(f"{what} must be a number") from None
    if not lo <= v <= hi:
        raise Invalid(f"{what} must be between {lo} and {hi}")
    return v


def absolute_path(p, what):
    if not isinstance(p, str) or not p.startswith("/") or "\n" in p or "\0" in p:
        raise Invalid(f"{what} must be an absolute path")
    return p


def by_contract(rule, *args, **kwargs):
    """rule(...) of the collection's contract, its refusal as Invalid with the same message."""
    try:
        return rule(*args, **kwargs)
    except ContractError as err:
        raise Invalid(str(err)) from None


def page_query(select, filters, before, limit, key="id"):
    """One page of `select` (ending in a WHERE clause), newest first: the (column, value) filters
    whose value is set, the rows before the cursor `before` on `key`, at most `limit` of them.
    Columns are the caller's constants; values are parameters."""
    sql, args = select, []
    for column, value in filters:
        if value:
            sql += f" AND {column}=%s"
            args.append(value)
    if before:
        sql += f" AND {key} < %s"
        args.append(before)
    return sql + f" ORDER BY {key} DESC LIMIT %s", args + [limit]


def page_args(args):
    """limit + before (a keyset cursor: the last id of the previous page)."""
    limit = int_between(args.get("limit", 50), "limit", 1, MAX_LIMIT)
    before = args.get("before")
    return limit, (int_between(before, "before", 0, 2**62) if before not in (None, "") else None)
