"""The shipped templates, installed as the package `newsletter.templates` (see pyproject.toml).

This file makes the folder a package, so `importlib.resources` and Jinja2's `PackageLoader` find the
templates the same way in a wheel, an sdist install and an editable install of this checkout.
"""
