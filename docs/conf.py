"""Sphinx configuration of the docs site (``make docs``).

The pages stay Markdown, readable on their own in the repository; MyST turns
them into the site, and autodoc builds the API reference (``api.md``) from the
docstrings. The build reads nothing from the network: ``make docs`` runs with
``-W -n``, so a broken link between pages, a missing heading anchor or a
reference to an undocumented name of this project fails it. Names of other
projects (Python, Pyramid, WebOb, drivers) cannot be resolved without
intersphinx inventories, which would need the network, so they are listed in
``nitpick_ignore_regex`` below: only this project's own names must resolve.
"""

from __future__ import annotations

import builtins
import importlib
import inspect as pyinspect
import posixpath
import re
import sys
from importlib.metadata import version as _version
from pathlib import Path

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.ext.autodoc.preserve_defaults import update_defvalue
from sphinx.util import inspect
from sphinx.util.docutils import SphinxDirective

ROOT = Path(__file__).resolve().parent.parent
# Document the work tree's package even when another copy is installed.
sys.path.insert(0, str(ROOT / "src"))

project = "pyramid_sessionstore"
author = "pyramid_sessionstore developers"
copyright = "pyramid_sessionstore developers, MIT licence"
release = _version("pyramid_sessionstore")
version = ".".join(release.split(".")[:2])

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
]

root_doc = "index"
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

# -- MyST -------------------------------------------------------------------
# GitHub-style anchors for headings down to ####, so "lifecycle.md#the-timing-model"
# works on the site as it does on GitHub; a link to a missing anchor is a warning.
myst_heading_anchors = 4
myst_enable_extensions = ["colon_fence"]

# -- autodoc ----------------------------------------------------------------
autodoc_default_options = {
    "members": True,
    "member-order": "bysource",
}
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
autoclass_content = "class"  # parameters are documented in the class docstring
# Names imported only under TYPE_CHECKING, so autodoc sees them as strings:
# say which project they belong to (and so which ignore rule below applies).
autodoc_type_aliases = {
    "Configurator": "pyramid.config.Configurator",
    "Request": "pyramid.request.Request",
}

# -- nitpicky: other projects' names ----------------------------------------
_EXTERNAL_MODULES = (
    "typing",
    "typing_extensions",
    "collections",
    "collections.abc",
    "datetime",
    "decimal",
    "uuid",
    "pathlib",
    "os",
    "logging",
    "threading",
    "types",
    "argparse",
    "sqlite3",
    "pyramid",
    "webob",
    "zope",
    "redis",
    "sqlalchemy",
    "pymemcache",
    "cryptography",
    "msgspec",
    "pytest",
    "_pytest",
)
nitpick_ignore = [("py:class", name) for name in dir(builtins)] + [
    ("py:exc", name) for name in dir(builtins)
]
nitpick_ignore_regex = [
    (r"py:(class|exc|func|meth|attr|data|obj|mod)", re.escape(module) + r"(\..*)?")
    for module in _EXTERNAL_MODULES
]
# Short references in src docstrings that only resolve once written in full
# (":class:`~pyramid_sessionstore.stores.SupportsExpiry`"); empty this list
# when src/pyramid_sessionstore/testing/contract.py is fixed.
nitpick_ignore += [("py:class", "SupportsExpiry"), ("py:class", "SupportsScan")]
# Type variables (``T`` in ``eventually(...) -> T``) are not objects to document.
nitpick_ignore_regex.append(("py:class", r"pyramid_sessionstore(\.\w+)*\.[A-Z]"))

# A failed highlight falls back to plain text: cosmetic, not a broken page
# (crontab lines have no Pygments lexer; an ellipsis in an SQL sketch).
suppress_warnings = ["misc.highlighting_failure"]

# -- links into the repository ----------------------------------------------
# The pages link to the demo's folder (``../demo/pyramid_sessionstore_demo/``),
# which works on GitHub and in an editor; on the site the same link goes to
# demo.md, the page that shows the demo's code.
_DEMO_LINK = re.compile(r"\]\(((?:\.\./)+)demo/[^)\s]*\)")


def _demo_links_to_demo_page(app: Sphinx, docname: str, source: list[str]) -> None:
    folder = posixpath.dirname(docname)

    def replace(match: re.Match[str]) -> str:
        target = posixpath.normpath(posixpath.join("docs", folder, match.group(1), "demo"))
        if target != "demo":  # a path that does not reach the repository's demo/
            return match.group(0)
        return "](" + posixpath.relpath("demo.md", folder or ".") + ")"

    source[0] = _DEMO_LINK.sub(replace, source[0])


def _init_signature(
    app: Sphinx,
    what: str,
    name: str,
    obj: object,
    options: object,
    signature: str | None,
    return_annotation: str | None,
) -> tuple[str, str | None] | None:
    """Show ``__init__``'s parameters for a class whose ``__new__`` only passes them on.

    autodoc prefers ``__new__``, which for such a class is ``(**kwargs)``:
    true, but it hides every keyword the class takes.
    """
    if what != "class" or not isinstance(obj, type):
        return None
    if "__new__" not in vars(obj) or "__init__" not in vars(obj):
        return None
    update_defvalue(app, obj.__init__, bound_method=True)  # autodoc_preserve_defaults
    init = inspect.signature(
        obj.__init__, bound_method=True, type_aliases=app.config.autodoc_type_aliases
    )
    text = inspect.stringify_signature(
        init, show_return_annotation=False, unqualified_typehints=True
    )
    return text, return_annotation


# -- exceptions: one list, in the order of exceptions.py ---------------------
_EXCEPTIONS_MODULE = "pyramid_sessionstore.exceptions"


def _is_project_exception(obj: object) -> bool:
    return (
        isinstance(obj, type)
        and issubclass(obj, BaseException)
        and obj.__module__ == _EXCEPTIONS_MODULE
    )


class _AutoExceptions(SphinxDirective):
    """``.. autoexceptions:: pyramid_sessionstore``: document every exception in its ``__all__``.

    In the order ``exceptions.py`` defines them (the hierarchy, base first),
    each with its bases, so an exception added to ``__all__`` appears without
    editing ``api.md``.
    """

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        module = importlib.import_module(self.arguments[0])
        found = [getattr(module, name) for name in module.__all__]
        found = sorted(filter(_is_project_exception, found), key=_source_line)
        lines = StringList()
        for exception in found:
            lines.append(f".. autoexception:: {module.__name__}.{exception.__name__}", "conf.py")
            lines.append("   :show-inheritance:", "conf.py")
            lines.append("", "conf.py")
        container = nodes.container()
        self.state.nested_parse(lines, self.content_offset, container)
        return container.children


def _source_line(obj: type) -> int:
    return pyinspect.getsourcelines(obj)[1]


def _skip_exceptions(
    app: Sphinx, what: str, name: str, obj: object, skip: bool, options: object
) -> bool | None:
    """Leave the exceptions out of module listings: ``autoexceptions`` lists them."""
    return True if what == "module" and _is_project_exception(obj) else None


def setup(app: Sphinx) -> None:
    app.connect("source-read", _demo_links_to_demo_page)
    app.connect("autodoc-process-signature", _init_signature)
    app.connect("autodoc-skip-member", _skip_exceptions)
    app.add_directive("autoexceptions", _AutoExceptions)


# -- HTML -------------------------------------------------------------------
html_theme = "furo"
html_title = f"pyramid_sessionstore {release}"
html_static_path: list[str] = []
