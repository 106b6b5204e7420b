# make install: system + Python packages and the C backend; make test: the whole suite.
PYTHON ?= python3
SRC := $(wildcard cbackend/src/*.c cbackend/src/*.h cbackend/include/*.h) cbackend/build_ffi.py
BUILT := engine/.built

.PHONY: install deps build test header default-model clean

install: deps build

deps:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null; \
	else echo "not root: install the Debian package dataset-fashion-mnist yourself for the full data set"; fi
	$(PYTHON) -m pip install -q -r requirements.txt

build: $(BUILT)

$(BUILT): $(SRC)
	$(PYTHON) cbackend/build_ffi.py
	@touch $@

test: build
	$(PYTHON) -m pytest -q tests

header:
	$(PYTHON) -m engine.gen_header

default-model: build
	$(PYTHON) zoo/make_default.py

clean:
	rm -rf build engine/_mfe_*.so engine/_mfe_*.c engine/_mfe_*.o $(BUILT)
