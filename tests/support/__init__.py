"""Test support: real models, crafted attack files and helpers shared by the tests (imported as
``support.<module>``; pyproject puts tests/ on the path, no test edits sys.path)."""
