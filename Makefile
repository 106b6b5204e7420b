# make install: system + Python packages and the C backend; make test: the whole suite.
PYTHON ?= python3
SRC := $(wildcard cbackend/src/*.c cbackend/src/*.h cbackend/include/*.h) cbackend/build_ffi.py
BUILT := engine/.built

.PHONY: install deps build test header default-model clean

install: deps build

deps:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist \
			gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user >/dev/null; \
	else echo "not root: install the Debian package dataset-fashion-mnist yourself for the full data set"; fi
	$(PYTHON) -m pip install -q -r requirements.txt
	$(PYTHON) -m pip install -q -r requirements-bench.txt

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

# ARM boards (Jetson Nano): libmfe.so + ABI-mode loader, the static runner mfrun, README, smoke test under qemu
.PHONY: arm64
ARM_CPU ?= cortex-a57
arm64:
	$(PYTHON) -m engine.crosscmd --target aarch64 --cpu $(ARM_CPU) -o build/arm64

clean:
	rm -rf build engine/_mfe_*.so engine/_mfe_*.c engine/_mfe_*.o $(BUILT)

# ---- robustness (issue 7): the C backend under sanitizers and a libFuzzer target on its loader ----
# make sanitize: cbackend/tests/run_models.c (scalar and -march=native builds) under ASan + UBSan on the
#   zoo model and generated ones, outputs compared with the numpy reference; make fuzz: FUZZ_SECONDS of
#   libFuzzer (clang) from the seed corpus cbackend/fuzz/corpus; any finding fails. docs/format.md "Robustness".
.PHONY: robustness-deps sanitize fuzz-build fuzz
ROBUST := build/robustness
C_SRCS = $(wildcard cbackend/src/*.c)
C_INCLUDES := -Icbackend/include -Icbackend/src
SAN_CC ?= gcc
SAN_FLAGS := -std=c11 -g -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all \
	-Wall -Wextra -Wno-unused-parameter
FUZZ_CC ?= clang
FUZZ_SECONDS ?= 60
FUZZ_FLAGS ?=

robustness-deps:
	@if echo 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { return 0; }' | \
		$(FUZZ_CC) -x c -fsanitize=fuzzer,address,undefined - -o /dev/null 2>/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang libclang-rt-14-dev >/dev/null; \
	else echo "the fuzz target needs clang and libclang-rt-14-dev (Debian 12): install them"; exit 1; fi

$(ROBUST)/run_models_%: $(SRC) cbackend/tests/run_models.c cbackend/tests/work.h
	@mkdir -p $(ROBUST)
	$(SAN_CC) $(SAN_FLAGS) -fopenmp -pthread $(if $(filter scalar,$*),-DMFE_FORCE_SCALAR,-march=native) $(C_INCLUDES) \
		$(C_SRCS) cbackend/tests/run_models.c -o $@ -lm

sanitize: $(ROBUST)/run_models_scalar $(ROBUST)/run_models_native
	$(PYTHON) cbackend/tests/make_cases.py $(ROBUST)/cases > $(ROBUST)/cases.txt
	@for v in scalar native; do \
		echo "$(ROBUST)/run_models_$$v ($(ROBUST)/sanitize-$$v.log)"; \
		ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
			$(ROBUST)/run_models_$$v $$(cat $(ROBUST)/cases.txt) > $(ROBUST)/sanitize-$$v.log \
			|| { tail -n 20 $(ROBUST)/sanitize-$$v.log; exit 1; }; \
		tail -n 1 $(ROBUST)/sanitize-$$v.log; \
	done

$(ROBUST)/fuzz_model: $(SRC) cbackend/fuzz/fuzz_model.c cbackend/tests/work.h
	@mkdir -p $(ROBUST)
	$(FUZZ_CC) -std=c11 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -march=native \
		-Wno-unknown-pragmas $(C_INCLUDES) $(C_SRCS) cbackend/fuzz/fuzz_model.c -o $@ -lm

fuzz-build: robustness-deps $(ROBUST)/fuzz_model

fuzz: fuzz-build
	@mkdir -p $(ROBUST)/corpus
	$(PYTHON) cbackend/fuzz/make_corpus.py $(ROBUST)/seeds  # seeds of the current op table too
	$(ROBUST)/fuzz_model -max_total_time=$(FUZZ_SECONDS) -dict=cbackend/fuzz/mfe.dict -timeout=10 \
		-rss_limit_mb=2048 -print_final_stats=1 $(FUZZ_FLAGS) $(ROBUST)/corpus $(ROBUST)/seeds cbackend/fuzz/corpus
