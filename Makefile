# Two commands matter: `make demo` (set up, then scan a benign and a malicious model)
# and `make test` (set up, then lint, type-check and run the whole suite).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
EXTRAS := keras,sign,store,sandbox,ml,cleanlab,serve,docs,torch,dev
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)
export KERAS_BACKEND := jax
export OPENBLAS_NUM_THREADS ?= 1

.PHONY: setup demo test test-fast lint typecheck docs docs-site check-docs bench-peers bench-scan bench-art bench-data clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[$(EXTRAS)]'
	rm -f $(VENV)/.installed-* && touch $@

demo: setup
	$(PY) scripts/demo.py

lint: setup
	$(VENV)/bin/ruff check src tests bench scripts
	$(VENV)/bin/ruff format --check src tests bench scripts

typecheck: setup
	$(VENV)/bin/mypy

docs: setup
	$(PY) -m kerasguard.rules.docs > docs/rules.md
	$(PY) -m kerasguard.policy_reference > docs/policy.md

check-docs: setup
	$(PY) -m kerasguard.rules.docs | diff -u docs/rules.md - || (echo "docs/rules.md is stale: run 'make docs'"; exit 1)
	$(PY) -m kerasguard.policy_reference | diff -u docs/policy.md - || (echo "docs/policy.md is stale: run 'make docs'"; exit 1)

# The documentation site, built with warnings as errors (broken links, pages missing from the nav).
docs-site: setup
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict -q

# Branch coverage is reported (kerasguard in the test processes; sandbox and scan-worker children are not
# traced). One pytest-xdist worker per core, idle workers take tests from busy ones (decision 63).
test: lint typecheck check-docs docs-site
	$(PY) -m pytest -q -p no:cacheprovider -n auto --dist worksteal --durations=25 --cov --cov-report=term

# The edit loop: everything but the tests marked slow (Keras children, training, servers).
test-fast: lint typecheck check-docs docs-site
	$(PY) -m pytest -q -p no:cacheprovider -n auto --dist worksteal -m "not slow"


clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache

# Peer scanners for side-by-side benchmarks only (never runtime dependencies).
bench-peers:
	test -x .venv-peers/bin/python || $(PYTHON) -m venv .venv-peers
	.venv-peers/bin/pip install -q -r bench/requirements-peers.txt

bench-scan: setup bench-peers
	$(PY) bench/bench_scan.py

# ART (TensorFlow backend) and torch for bench/bench_data.py only (never runtime dependencies).
bench-art:
	test -x .venv-art/bin/python || $(PYTHON) -m venv .venv-art
	.venv-art/bin/pip install -q -r bench/requirements-art.txt

bench-data: setup bench-art
	KERAS_BACKEND=jax PYTHONPATH=src $(PY) bench/bench_data.py --art-python .venv-art/bin/python
