"""What the fleet areas share: the errors callers turn into responses, field checks, paging,
sorting and filtering of lists."""
from contextlib import contextmanager
from typing import NamedTuple

from flask_babel import gettext as _

from ..contract import ContractError

MAX_LIMIT = 200


class Invalid(ValueError):
    """The request is refused (-> 400); str() is the message for the user, `field` the input it is
    about when one is (a form shows the message under that field), else None.

    Every message of Invalid, Forbidden and NotFound is built with gettext and named parameters
    (`_("%(key)s is required", key=key)`): in the request's language, English outside a request
    (scheduler, workers: Flask-Babel has no context there). tests/ui/test_error_i18n.py checks it."""

    def __init__(self, message, field=None):
        super().__init__(message)
        self.field = field


@contextmanager
def about(field_name):
    """A refusal raised inside is about this field (unless it already names one)."""
    try:
        yield
    except Invalid as err:
        if err.field is None:
            err.field = field_name
        raise


class NotFound(LookupError):
    """No such row (-> 404)."""


class Forbidden(PermissionError):
    """The caller's role may not make this change (-> 403); `field` as for Invalid."""

    def __init__(self, message, field=None):
        super().__init__(message)
        self.field = field


def field(data, key, default=None, required=False):
    """data[key], or default when absent or null; Invalid if required and there is neither."""
    if key not in data or data[key] is None:
        if required and default is None:
            raise Invalid(_("%(key)s is required", key=key))
        return default
    return data[key]


def matching(regex, value, what):
    if not isinstance(value, str) or not regex.fullmatch(value):
        raise Invalid(_("%(what)s %(value)r is not valid", what=what, value=value))
    return value


def int_between(value, what, lo, hi):
    try:
        v = int(value)
    except (TypeError, ValueError):
        raise Invalid(_("%(what)s must be a number", what=what)) from None
    if not lo <= v <= hi:
        raise Invalid(_("%(what)s must be between %(lo)s and %(hi)s", what=what, lo=lo, hi=hi))
    return v


def absolute_path(p, what):
    if not isinstance(p, str) or not p.startswith("/") or "\n" in p or "\0" in p:
        raise Invalid(_("%(what)s must be an absolute path", what=what))
    return p


def said(text):
    """A message of the collection's contract (a contract.Text, or a ContractError) in the reader's
    language: its English template looked up in the service's catalog, then its parameters filled in."""
    return text.render(_) if hasattr(text, "render") else text


def by_contract(rule, *args, **kwargs):
    """rule(...) of the collection's contract, its refusal as Invalid with the same message (in the
    reader's language)."""
    try:
        return rule(*args, **kwargs)
    except ContractError as err:
        raise Invalid(said(err)) from None


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


# --- sorting and filtering of lists (pages and API alike) ---

SEARCH_MAX = 100
ORDERS = ("asc", "desc")


class Listing(NamedTuple):
    """How one list may be sorted and filtered. Everything that becomes SQL text is here, fixed:
    a request only picks a sort key or a filter value from these tables, and its search text is
    a parameter.

    source:  "FROM ... JOIN ..." of the list (the keyset cursor reads its row's sort value through it)
    key:     the unique column of the default order (newest first) and the tie-breaker of every other
    sorts:   {sort key: (SQL expression, first order)}; expressions are never NULL (COALESCE), so the
             cursor's row comparison never meets a NULL
    search:  columns the text `q` is looked for in (LIKE, the column's collation: case-insensitive)
    choices: {parameter: (column, allowed values)} filters compared with =, or
             {parameter: {value: fixed SQL condition}} for values that are not a column's (NULL)
    ids:     {parameter: column} filters by an id (an integer)
    default: the sort key of a request that gives none ("": the key, newest first)"""
    source: str
    key: str
    sorts: dict
    search: tuple = ()
    choices: dict = {}
    ids: dict = {}
    default: str = ""


class ListArgs(NamedTuple):
    """A request's sort and filters, checked against its Listing (list_args)."""
    sort: str        # a key of Listing.sorts, or "" for the default order
    order: str       # asc or desc
    q: str           # search text, "" for none
    filters: dict    # {parameter: value} of the choices and ids set

    def query(self, **changes):
        """These arguments as URL query parameters (for links that keep them), with changes; a
        change of sort, order or filter starts again at the first page (no cursor kept)."""
        out = {k: v for k, v in (("sort", self.sort), ("order", self.order), ("q", self.q)) if v}
        out.update({k: v for k, v in self.filters.items() if v not in (None, "")})
        out.update(changes)
        return {k: v for k, v in out.items() if v not in (None, "")}

    def toggle(self, key):
        """The arguments of a click on column `key`'s header: the other order when it is the
        current sort, else that column in its first order."""
        return self.query(sort=key, order=("asc" if self.order == "desc" else "desc") if key == self.sort else None)


def list_args(listing, args):
    """The sort and filters of request arguments (a mapping: request.args), checked: an unknown
    sort key, order or filter value is refused (Invalid, 400), never passed on."""
    sort = args.get("sort") or listing.default
    if sort and sort not in listing.sorts:
        raise Invalid(_("sort must be one of %(choices)s", choices=', '.join(sorted(listing.sorts))), "sort")
    order = args.get("order") or (listing.sorts[sort][1] if sort else "desc")
    if order not in ORDERS:
        raise Invalid(_("order must be asc or desc"), "order")
    q = (args.get("q") or "").strip()
    if len(q) > SEARCH_MAX:
        raise Invalid(_("q must be at most %(search_max)s characters", search_max=SEARCH_MAX), "q")
    filters = {}
    for name, spec in listing.choices.items():
        value = args.get(name) or ""
        allowed = spec if isinstance(spec, dict) else spec[1]
        if value and value not in allowed:
            raise Invalid(_("%(name)s must be one of %(choices)s", name=name, choices=', '.join(allowed)), name)
        filters[name] = value
    for name in listing.ids:
        value = args.get(name)
        with about(name):
            filters[name] = int_between(value, name, 1, 2**62) if value not in (None, "") else None
    return ListArgs(sort, order, q, filters)


def like_pattern(text):
    """`text` as a LIKE pattern that matches it anywhere, its own % and _ (and the escape
    character !) taken literally: the query says ESCAPE '!'."""
    return "%" + text.replace("!", "!!").replace("%", "!%").replace("_", "!_") + "%"


def list_query(listing, columns, largs, before=None, limit=None):
    """SELECT `columns` of the listing, filtered and ordered by `largs` (ListArgs), the page after
    the cursor `before` (the key of the previous page's last row) of at most `limit` rows.

    In any order but the default one the cursor row's sort value is read in SQL, so that a page
    follows on from the previous one as long as that row exists."""
    sql, args = f"SELECT {columns} {listing.source} WHERE 1=1", []
    for name, value in largs.filters.items():
        if value in (None, ""):
            continue
        spec = listing.choices.get(name)
        if isinstance(spec, dict):
            sql += f" AND {spec[value]}"
        else:
            sql += f" AND {spec[0] if spec else listing.ids[name]}=%s"
            args.append(value)
    if largs.q and listing.search:
        sql += " AND (" + " OR ".join(f"{c} LIKE %s ESCAPE '!'" for c in listing.search) + ")"
        args += [like_pattern(largs.q)] * len(listing.search)
    direction, cmp = ("DESC", "<") if largs.order == "desc" else ("ASC", ">")
    key = listing.key
    if largs.sort:
        expr = listing.sorts[largs.sort][0]
        if before:
            sql += f" AND ({expr}, {key}) {cmp} ((SELECT {expr} {listing.source} WHERE {key}=%s), %s)"
            args += [before, before]
        sql += f" ORDER BY {expr} {direction}, {key} {direction}"
    else:
        if before:
            sql += f" AND {key} {cmp} %s"
            args.append(before)
        sql += f" ORDER BY {key} {direction}"
    if limit:
        sql += " LIMIT %s"
        args.append(limit)
    return sql, args
