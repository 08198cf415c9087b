"""The REST endpoints a Roundup tracker adds for ``bugless import``, and their reading.

Roundup's REST interface exposes neither an item's journal nor who may view
an item, so the tracker adds both to its ``interfaces.py`` (Roundup's
``doc/rest.txt``, "Adding new rest endpoints"): :data:`INTERFACES_PY`.

Roundup keeps no "private" flag: who may view an item is its schema's
``View`` permissions, a check function deciding per item (the classic
schema's ``own_record``; a tracker's "only the nosy list sees a confidential
issue"). ``GET /rest/bugless_hidden/<class>`` asks them inside Roundup, as
its pages do, for a reader with the roles a new user gets
(``new_web_user_roles``) and no tie to any item, and answers the ids that
reader may not view: the issues that are restricted, and the messages and
files the import leaves out (bugless has no per-comment visibility).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bugless_core.errors import FailedPrecondition

#: What a tracker appends to its ``interfaces.py`` (then restarts its server).
INTERFACES_PY = """
# bugless-import: GET /rest/history/<class>/<id>, an item's journal (Roundup's
# REST interface does not expose it), and GET /rest/bugless_hidden/<class>, the
# items its ordinary readers may not view; see doc/rest.txt "Adding new rest
# endpoints".
from roundup.cgi.exceptions import NotFound as _BuglessNotFound, Unauthorised as _BuglessDenied
from roundup.rest import Routing, _data_decorator


def _bugless_date(value):
    return "%04d-%02d-%02dT%02d:%02d:%09.6f+00:00" % (
        value.year, value.month, value.day, value.hour, value.minute, value.second)


def _bugless_json(value):
    if isinstance(value, (list, tuple)):
        return [_bugless_json(v) for v in value]
    if isinstance(value, dict):
        return dict((str(k), _bugless_json(v)) for k, v in value.items())
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def _bugless_hidden_one_by_one(db, klass, userid, roles):
    # Roundup before 2.1 keeps a role's permissions as a list (later ones
    # by permission and class: permission_list()); each is tested as
    # Security.hasPermission tests it. A View without a check function
    # answers for the whole class; otherwise every item is asked in turn.
    perms = []
    for role in roles:
        listed = getattr(role, "permissions", None)
        perms.extend(listed if isinstance(listed, list) else role.permission_list())
    name = klass.classname
    if any(p.check is None and p.test(db, "View", name, None, userid, None) for p in perms):
        return []
    return sorted((i for i in klass.list()
                   if not any(p.test(db, "View", name, None, userid, i) for p in perms)),
                  key=int)


class RestfulInstance:

    @Routing.route("/history/<:class_name>/<:item_id>", "GET")
    @_data_decorator
    def bugless_history(self, class_name, item_id, input_payload):
        if class_name not in self.db.classes:
            raise _BuglessNotFound("Class %s not found" % class_name)
        klass = self.db.getclass(class_name)
        if not item_id.isdigit() or not klass.hasnode(item_id):
            raise _BuglessNotFound("%s%s not found" % (class_name, item_id))
        uid = self.db.getuid()
        if not self.db.security.hasPermission("View", uid, class_name, itemid=item_id):
            raise _BuglessDenied("Permission to view %s%s denied" % (class_name, item_id))
        entries = [
            {"date": _bugless_date(when), "user": user, "action": action,
             "params": _bugless_json(params)}
            for _nodeid, when, user, action, params in klass.history(item_id, skipquiet=False)
        ]
        return 200, {"history": entries}

    @Routing.route("/bugless_hidden/<:class_name>", "GET")
    @_data_decorator
    def bugless_hidden(self, class_name, input_payload):
        # The items of the class the caller may view that a reader with the
        # roles new users get (new_web_user_roles) may not: the tracker's
        # View permissions asked as its own pages ask them, for a user tied
        # to no item (the anonymous account's id: no item's creator or nosy).
        # Judged as Roundup's filter_with_permissions judges a list: a View
        # without a check function answers for the whole class (a
        # permission looks at the item only to run its check), then the
        # checks' filter functions in the database, and one item at a time
        # only where a check has no filter.
        # A Roundup before 2.1 (no filter_with_permissions, a role without
        # filter_iter or hasPermission of its own) is judged item by item.
        if class_name not in self.db.classes:
            raise _BuglessNotFound("Class %s not found" % class_name)
        klass = self.db.getclass(class_name)
        nobody = self.db.user.lookup("anonymous")
        roles = [r.strip().lower() for r in self.db.config.NEW_WEB_USER_ROLES.split(",")]
        roles = [self.db.security.role[r] for r in roles if r in self.db.security.role]
        names = [r.name for r in roles]
        if not (hasattr(klass, "filter_with_permissions")
                and all(hasattr(r, "filter_iter") and hasattr(r, "hasPermission")
                        for r in roles)):
            return 200, {"hidden": _bugless_hidden_one_by_one(self.db, klass, nobody, roles),
                         "roles": names, "per_item": True}
        if any(role.hasPermission(self.db, "View", nobody, class_name, None, None, False)
               for role in roles):
            return 200, {"hidden": [], "roles": names}
        left = set(klass.filter_with_permissions(None, {}, retired=False))
        checks = [p for role in roles for p in role.filter_iter("View", class_name)
                  if p.properties is None or not p.limit_perm_to_props_only]
        if all(p.filter for p in checks):
            for perm in checks:
                for args in perm.filter(self.db, nobody, klass):
                    if not left:
                        break
                    args.update(sort=[], group=[], retired=None)
                    left.difference_update(klass.filter(list(left), **args))
        else:
            left = set(i for i in left
                       if not any(role.hasPermission(self.db, "View", nobody, class_name,
                                                     None, i, True) for role in roles))
        return 200, {"hidden": sorted(left, key=int), "roles": names}

"""

#: The report's warning for ``--option restrictions=unchecked``.
UNCHECKED = (
    "--option restrictions=unchecked: Roundup's View permissions were not asked, so every "
    "issue, message and file was imported as the import account sees it; if the tracker's "
    "schema shows any item to only some readers, those readers' limits are not in bugless"
)
#: The classes whose hidden items the import needs to know.
HIDDEN_CLASSES = ("issue", "msg", "file")


def hidden_items(
    get: Callable[..., Any], base: str, *, checked: bool = True
) -> tuple[dict[str, frozenset[str]], str]:
    """Per class of :data:`HIDDEN_CLASSES`, the ids its ordinary readers may not view.

    Args:
        get: The importer's ``GET /rest/<path>`` (None on 404).
        base: The tracker's address, for the message.
        checked: False for ``--option restrictions=unchecked``: nothing is
            asked and nothing is hidden.

    Returns:
        The hidden ids per class, and the roles they were judged for
        (``User``), for the report.

    Raises:
        FailedPrecondition: the tracker lacks the endpoint (an
            ``interfaces.py`` from before it): without it, an item only some
            may view could not be told from the others.
    """
    hidden: dict[str, frozenset[str]] = {k: frozenset() for k in HIDDEN_CLASSES}
    roles = ""
    for klass in HIDDEN_CLASSES if checked else ():
        answer = get(f"bugless_hidden/{klass}")
        if answer is None:
            raise FailedPrecondition(
                f"{base}rest/bugless_hidden/{klass}: no such endpoint, so the items the "
                "tracker's permissions show to only some readers cannot be told apart; append "
                "the current bugless_import.sources.roundup.INTERFACES_PY to the tracker's "
                "interfaces.py (in place of an older copy) and restart its web server, or, "
                "only for a tracker whose schema restricts no item to some readers, give "
                "--option restrictions=unchecked"
            )
        hidden[klass] = frozenset(str(i) for i in answer.get("hidden") or [])
        roles = ", ".join(str(r) for r in answer.get("roles") or []) or "none"
    return hidden, roles
