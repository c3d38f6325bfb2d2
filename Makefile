# Thin wrapper around CMake. `make run` and `make test` do all their own
# set-up on a fresh Debian 12 machine (installing missing packages as root).
BUILD_DIR ?= build
CMAKE_FLAGS ?=
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
ASAN_BUILD_DIR ?= build-asan
FUZZ_BUILD_DIR ?= build-fuzz
FUZZ_SECONDS ?= 60
FUZZERS ?= fuzz_server fuzz_frame fuzz_verify_wire

.PHONY: all deps build run test test-asan test-valgrind fuzz bench clean format deb

all: build

deps:
	@./scripts/install-deps.sh

build: deps
	@cmake -S . -B $(BUILD_DIR) $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD_DIR) -j $(JOBS)

# Development: the database under var/ is created on the first run (a
# production start without --create-db refuses a missing database). The
# var/ paths are passed explicitly, so that `make run` means the same
# whatever tokend's built-in defaults are (FHS ones with -DTOKEND_FHS=ON).
RUN_DIR ?= var
run: build
	@mkdir -p -m 0700 $(RUN_DIR)
	./$(BUILD_DIR)/tokend --create-db \
	  --socket "$${TOKEND_SOCKET:-$(RUN_DIR)/tokend.sock}" \
	  --db $(RUN_DIR)/tokend.db --pepper-file $(RUN_DIR)/pepper $(ARGS)

test: build
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS)

# The whole suite with every binary built with ASan + UBSan (gcc); any
# report, or a leak at a process's exit, fails its test. The fault-injection
# tests preload a shim ahead of the ASan runtime, which ASan then allows.
test-asan: deps
	@cmake -S . -B $(ASAN_BUILD_DIR) -DTOKEND_SANITIZE=ON $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(ASAN_BUILD_DIR) -j $(JOBS)
	cd $(ASAN_BUILD_DIR) && \
	  ASAN_OPTIONS=detect_leaks=1:detect_stack_use_after_return=1:verify_asan_link_order=0 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --output-on-failure -j $(JOBS)

# The integration tests with every tokend under valgrind memcheck: any
# invalid access, or a definite or indirect leak at exit, fails the test
# (tokend must exit 0 at each test's end).
VALGRIND ?= valgrind -q --vgdb=no --error-exitcode=99 --leak-check=full \
  --errors-for-leak-kinds=definite,indirect
test-valgrind: build
	cd $(BUILD_DIR) && TOKEND_TEST_WRAPPER="$(VALGRIND)" \
	  ctest --output-on-failure -j $(JOBS) -L integration

# libFuzzer targets (clang) on a copy of tests/fuzz/corpus/, FUZZ_SECONDS
# each, side by side; fails on any crash, leak or sanitizer report.
fuzz: deps
	@./scripts/install-deps.sh fuzz
	@CC=clang-14 cmake -S . -B $(FUZZ_BUILD_DIR) -DTOKEND_FUZZ=ON \
	  -DTOKEND_TESTS=OFF $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(FUZZ_BUILD_DIR) -j $(JOBS) \
	  --target $(FUZZERS) gen_corpus
	@FUZZ_BUILD_DIR=$(FUZZ_BUILD_DIR) FUZZ_SECONDS=$(FUZZ_SECONDS) \
	  FUZZERS="$(FUZZERS)" ./scripts/fuzz.sh

# Side by side with Redis GET (installs redis-server if missing); prints one
# table. BENCH_LARGE=1 adds the 1,000,000-token targets. See
# docs/PERFORMANCE.md.
bench: build
	@BUILD_DIR=$(BUILD_DIR) ./scripts/bench.sh

format:
	clang-format -i common/*.[ch] server/*.[ch] server/*/*.[ch] server/*/*/*.[ch] client/*/*.[ch] client/*/*/*.[ch] tests/*/*.[ch] tests/*/*/*.[ch]

clean:
	rm -rf $(BUILD_DIR) $(ASAN_BUILD_DIR) $(FUZZ_BUILD_DIR) build-deb

# The Debian packages (tokend, libtokend-client0, libtokend-client-dev),
# built with dpkg-buildpackage from a copy of the tree and checked by
# lintian, into build-deb/ (scripts/build-deb.sh; docs/OPERATIONS.md).
# scripts/test-deb.sh installs them on a fresh Debian 12 and uses them.
deb:
	@./scripts/build-deb.sh build-deb
