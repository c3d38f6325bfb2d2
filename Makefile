# Thin wrapper around CMake. `make run` and `make test` do all their own
# set-up on a fresh Debian 12 machine (installing missing packages as root).
BUILD_DIR ?= build
CMAKE_FLAGS ?=
JOBS ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: all deps build run test clean format

all: build

deps:
	@./scripts/install-deps.sh

build: deps
	@cmake -S . -B $(BUILD_DIR) $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD_DIR) -j $(JOBS)

run: build
	@mkdir -p var
	./$(BUILD_DIR)/tokend $(ARGS)

test: build
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS)

format:
	clang-format -i common/*.[ch] server/*.[ch] client/*.[ch] tests/*/*.[ch]

clean:
	rm -rf $(BUILD_DIR)
