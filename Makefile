# Developer and CI entry points. Tools run from the virtualenv, so no activation is needed.

VENV ?= .venv
PYTHON ?= python3.11
BIN := $(VENV)/bin
# Type-checked packages; one that holds no Python file yet is left out (mypy refuses it).
TYPED_PACKAGES := $(foreach pkg,models indexers service training bench,$(if $(wildcard $(pkg)/*.py),$(pkg)))

.PHONY: install check test demo bench-quality bench-speed bench-scan

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch goes first and pinned: on the project's machines `pip install torch==2.13.0` takes the
# CPU build from local disk, while letting another package pull torch in would fetch a CUDA
# build of several GB.
install: $(BIN)/python
	$(BIN)/python -m pip install torch==2.13.0
	$(BIN)/python -m pip install -e '.[dev]'

check:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy $(TYPED_PACKAGES)

# pytest exits 5 when it collected no test: that is a failure, say so plainly.
test:
	@rc=0; $(BIN)/pytest -q $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; fi; \
	exit $$rc

demo:
	$(BIN)/clonefinder serve --demo

bench-quality:
	$(BIN)/python -m bench.quality

bench-speed:
	$(BIN)/python -m bench.speed --profiles 1000000

bench-scan:
	$(BIN)/python -m bench.scan --profiles 100000
