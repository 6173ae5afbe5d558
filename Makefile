# Norn — the two commands of the README, and the few around them.
#   make run    install what is missing, build, start nornd
#   make test   install what is missing, build, run every test (unit, integration,
#               Python, Node, sanitizers, Bazel)
BUILD ?= build
ASAN_BUILD ?= build-asan
GENERATOR := $(shell command -v ninja >/dev/null 2>&1 && echo Ninja || echo "Unix Makefiles")
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
NORN_ARGS ?=

.PHONY: all deps build run test test-unit check-sanitize fuzz fuzz-smoke bazel-test node-deps format format-check clean help

all: build

help:
	@echo "make run             install dependencies, build, start nornd (NORN_ARGS=... for flags)"
	@echo "make test            install dependencies, build and run every test"
	@echo "make build           build into $(BUILD)/"
	@echo "make check-sanitize  ASan+UBSan build of the tests, and run them"
	@echo "make bazel-test      the Bazel build and test of the same targets (offline)"
	@echo "make fuzz            libFuzzer on the analyzer (FUZZ_SECONDS=300 by default)"
	@echo "make format          clang-format the C sources"

deps:
	@tools/install-deps.sh

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -G "$(GENERATOR)" -DCMAKE_BUILD_TYPE=RelWithDebInfo

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

run: build
	$(BUILD)/nornd $(NORN_ARGS)

node-deps:
	@cd tests/node && if [ ! -d node_modules ] || [ package-lock.json -nt node_modules ]; then \
	  npm ci --no-audit --no-fund --loglevel=error; fi

test: build node-deps format-check
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)
	$(MAKE) check-sanitize
	$(MAKE) fuzz-smoke
	$(MAKE) bazel-test

test-unit: build
	cd $(BUILD) && ctest --output-on-failure -L unit

check-sanitize: deps node-deps
	cmake -S . -B $(ASAN_BUILD) -G "$(GENERATOR)" -DCMAKE_BUILD_TYPE=Debug -DNORN_SANITIZE=ON \
	  -DCMAKE_C_COMPILER=clang
	cmake --build $(ASAN_BUILD) -j $(JOBS)
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --output-on-failure -j $(JOBS) -E '^(python|node)\.'

# The analyzer under libFuzzer with ASan+UBSan (clang). The generated message
# code comes from the CMake build.
FUZZ_SECONDS ?= 300
FUZZ_BIN = $(BUILD)/fuzz_analyzer
$(FUZZ_BIN): build tests/fuzz/fuzz_analyzer.c $(wildcard server/analyzer*.c server/analyzer.h)
	clang -g -O1 -std=c11 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined \
	  -Iserver -Icommon -I$(BUILD)/gen server/analyzer*.c tests/fuzz/fuzz_analyzer.c \
	  $(BUILD)/gen/google/protobuf/struct.pb-c.c $(BUILD)/gen/norn/v1/common.pb-c.c \
	  $(BUILD)/gen/google/protobuf/timestamp.pb-c.c -lprotobuf-c -lpcre2-8 -lpthread -o $@

fuzz: $(FUZZ_BIN)
	mkdir -p $(BUILD)/fuzz-corpus
	$(FUZZ_BIN) -max_total_time=$(FUZZ_SECONDS) -max_len=8192 $(BUILD)/fuzz-corpus

fuzz-smoke:
	$(MAKE) fuzz FUZZ_SECONDS=20

bazel-test: deps
	bazel test //... --test_output=errors
	bazel shutdown

FORMAT_SRCS = $(shell git ls-files '*.c' '*.h' 2>/dev/null)
format:
	clang-format -i $(FORMAT_SRCS)

format-check:
	@command -v clang-format >/dev/null || { echo "clang-format missing"; exit 1; }
	@clang-format --dry-run --Werror $(FORMAT_SRCS)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
