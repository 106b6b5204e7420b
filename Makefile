# make install: system + Python packages and the C backend; make test: the whole suite.
PYTHON ?= python3
SRC := $(wildcard cbackend/src/*.c cbackend/src/*.h cbackend/include/*.h) cbackend/build_ffi.py
BUILT := engine/.built

.PHONY: install deps build test header default-model mbv2-model mulfree-model every-op-model clean

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

# zoo/default.mfe: the converted fmnist-mbv2-wht (needs dataset-fashion-mnist for calibration);
# zoo/every-op.mfe + the sample images: a random-weight graph through every op, for tests and fuzzing
default-model: build
	$(PYTHON) cli.py convert zoo/fmnist-mbv2-wht.pt -o zoo/default.mfe --calib fashion-mnist:train:1024

mbv2-model: build
	$(PYTHON) cli.py convert zoo/fmnist-mbv2.pt -o zoo/fmnist-mbv2.mfe --calib fashion-mnist:train:1024

mulfree-model: build
	$(PYTHON) cli.py convert zoo/fmnist-mbv2-wht-mulfree.pt -o zoo/fmnist-mbv2-wht-mulfree.mfe --mulfree --calib fashion-mnist:train:1024

every-op-model: build
	$(PYTHON) zoo/make_every_op.py

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

# ---- CUDA backend (issue 6): build/cuda/libmfe_cuda.so, bound by engine/cuda.py (cffi ABI mode) ----
# make cuda                     sm_75 (CUDA 13's oldest target); the GPU machine: make cuda CUDA_ARCH=sm_90
# make cuda CUDA_ARCH=sm_53     a Jetson Nano, with the board's own nvcc (JetPack 4: CUDA 10.2); Orin: sm_87
# The C loader and kernels (cbackend/src/*.c, scalar) are linked in: model files are parsed and validated
# by the same C code as the C backend. CUDA_DEFS=-DMFE_CUDA_PLAIN builds without __dp4a (the sm_53 path).
.PHONY: cuda FORCE
NVCC ?= nvcc
CUDA_ARCH ?= sm_75
CUDA_OUT ?= build/cuda
CUDA_DEFS ?=
CUDA_CC ?= $(CC)
CUDA_HDRS := $(wildcard cbackend/cuda/*.cuh cbackend/cuda/*.h) $(wildcard cbackend/src/*.h cbackend/include/*.h)
CUDA_OBJS := $(patsubst cbackend/cuda/%.cu,$(CUDA_OUT)/obj/%.o,$(wildcard cbackend/cuda/*.cu)) \
	$(patsubst cbackend/cuda/%.c,$(CUDA_OUT)/obj/cuda_%.o,$(wildcard cbackend/cuda/*.c)) \
	$(patsubst cbackend/src/%.c,$(CUDA_OUT)/obj/c_%.o,$(wildcard cbackend/src/*.c))
CUDA_FLAGS = -std=c++14 -O3 -arch=$(CUDA_ARCH) -Xcompiler -fPIC,-Wall,-Wextra -DMFE_CUDA_ARCHS='"$(CUDA_ARCH)"' \
	$(CUDA_DEFS) $(C_INCLUDES)
CUDA_CFLAGS = -std=c11 -O2 -fPIC -DMFE_FORCE_SCALAR -Wall -Wextra -Wno-unused-parameter -Wno-unknown-pragmas $(C_INCLUDES)

cuda: $(CUDA_OUT)/libmfe_cuda.so

$(CUDA_OUT)/flags: FORCE  # rebuild everything when the flags change (CUDA_ARCH, CUDA_DEFS)
	@mkdir -p $(CUDA_OUT)/obj
	@echo '$(NVCC) $(CUDA_FLAGS) | $(CUDA_CC) $(CUDA_CFLAGS)' | cmp -s - $@ || echo '$(NVCC) $(CUDA_FLAGS) | $(CUDA_CC) $(CUDA_CFLAGS)' > $@

$(CUDA_OUT)/obj/%.o: cbackend/cuda/%.cu $(CUDA_HDRS) $(CUDA_OUT)/flags
	$(NVCC) $(CUDA_FLAGS) -c $< -o $@

$(CUDA_OUT)/obj/cuda_%.o: cbackend/cuda/%.c $(CUDA_HDRS) $(CUDA_OUT)/flags
	$(CUDA_CC) $(CUDA_CFLAGS) -c $< -o $@

$(CUDA_OUT)/obj/c_%.o: cbackend/src/%.c $(CUDA_HDRS) $(CUDA_OUT)/flags
	$(CUDA_CC) $(CUDA_CFLAGS) -c $< -o $@

$(CUDA_OUT)/libmfe_cuda.so: $(CUDA_OBJS) cbackend/cuda/exports.map
	$(NVCC) -shared -arch=$(CUDA_ARCH) $(CUDA_OBJS) -Xlinker -Bsymbolic,--version-script=cbackend/cuda/exports.map -lm -o $@.tmp
	@mv $@.tmp $@

# The same CUDA sources on the CPU (cbackend/cuda/emu: fibers for threads, host memory for the device):
# build/cuda-emu/{plain,dp4a}/libmfe_cuda.so; MFE_CUDA_LIB=... runs engine's backend="cuda" on them (slow).
.PHONY: cuda-emu
cuda-emu:
	$(PYTHON) cbackend/cuda/emu/build.py build/cuda-emu/plain
	$(PYTHON) cbackend/cuda/emu/build.py build/cuda-emu/dp4a --dp4a
