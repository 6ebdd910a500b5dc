"""Shared test helpers: builders, fake clocks, loopback servers and the fixtures that start them.

``tests.helpers.bot`` is a pytest plugin (``tests/conftest.py``), so its fixtures are available
everywhere; the other modules are imported by the tests that use them.
"""
