# Developer and CI entry points. Tools run from the virtualenv, so no activation is needed.

VENV ?= .venv
PYTHON ?= python3.11
BIN := $(VENV)/bin
# Type-checked packages; one that holds no Python file yet is left out (mypy refuses it).
TYPED_PACKAGES := $(foreach pkg,models indexers service training bench,$(if $(wildcard $(pkg)/*.py),$(pkg)))

# Exits with a plain sentence when `make demo` could not listen on HOST:PORT.
define PORT_FREE
import errno, socket, sys
host, port = sys.argv[1], int(sys.argv[2])
try:
    addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
except OSError as exc:
    sys.exit(f"make demo: HOST={host} is not an address this machine can listen on ({exc})")
for family, kind, proto, _, address in addresses:
    with socket.socket(family, kind, proto) as probe:
        # As uvicorn binds: a port left in TIME_WAIT by a stopped server counts as free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                sys.exit(f"make demo: port {port} on {host} is in use by another program; choose a free one, e.g. make demo PORT={port + 1}")
            sys.exit(f"make demo: cannot listen on {host}:{port} ({exc.strerror})")
endef
export PORT_FREE

.PHONY: install fonts check test demo bench-quality bench-speed bench-scan

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch goes first and pinned: on the project's machines `pip install torch==2.13.0` takes the
# CPU build from local disk, while letting another package pull torch in would fetch a CUDA
# build of several GB.
install: $(BIN)/python fonts
	$(BIN)/python -m pip install torch==2.13.0
	$(BIN)/python -m pip install -e '.[dev]'

# The PDF reports' fonts (Debian's Noto packages): installed where this user may install
# packages, else named, so that a report works on a fresh machine. Never fails the install.
FONT_PACKAGES := fonts-noto-core fonts-noto-cjk fonts-noto-color-emoji
fonts:
	@if dpkg -s $(FONT_PACKAGES) >/dev/null 2>&1; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		apt-get install -y --no-install-recommends $(FONT_PACKAGES) >/dev/null \
		|| { apt-get update >/dev/null && apt-get install -y --no-install-recommends $(FONT_PACKAGES) >/dev/null; } \
		|| echo "PDF reports need fonts that could not be installed: apt-get install $(FONT_PACKAGES)" >&2; \
	else echo "PDF reports need the Noto fonts: sudo apt-get install $(FONT_PACKAGES)" >&2; fi

check:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy $(TYPED_PACKAGES)

# pytest exits 5 when it collected no test: that is a failure, say so plainly.
test:
	@rc=0; $(BIN)/pytest -q $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; fi; \
	exit $$rc

# `make demo PORT=8001` (and HOST=...) when 8000 is taken: set on the command line only (a plain
# `=` wins over the environment, where HOST and PORT often mean something else). The port is
# tried first: the server binds it only once the model is loaded, so a busy port would
# otherwise fail late and unexplained.
HOST = 127.0.0.1
PORT = 8000

demo:
	@$(BIN)/python -c "$$PORT_FREE" '$(HOST)' '$(PORT)'
	$(BIN)/clonefinder serve --demo --host '$(HOST)' --port '$(PORT)'

bench-quality:
	$(BIN)/python -m bench.quality

bench-speed:
	$(BIN)/python -m bench.speed --profiles 1000000

bench-scan:
	$(BIN)/python -m bench.scan --profiles 100000
