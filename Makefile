# Shortcuts for the commands in README.md.
VENV ?= .venv

.PHONY: setup test lint format example bench
setup:
	bash scripts/setup.sh
test:
	bash scripts/test.sh
lint:
	$(VENV)/bin/ruff check geolayers tests examples benchmarks setup.py conftest.py
	$(VENV)/bin/ruff format --check geolayers tests examples benchmarks setup.py conftest.py
format:
	$(VENV)/bin/ruff format geolayers tests examples benchmarks setup.py conftest.py
example:
	bash scripts/setup.sh && $(VENV)/bin/python examples/deepsets_digit_sum.py
bench:
	$(VENV)/bin/python -m benchmarks.segment_reduce
