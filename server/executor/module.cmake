# The executor (server/executor): run slots, a bounded queue, one thread that
# spawns agents through norn-run-wrapper. No gRPC, no storage.
add_library(norn_executor STATIC ${CMAKE_CURRENT_LIST_DIR}/executor.c
  ${CMAKE_CURRENT_LIST_DIR}/events.c)
target_include_directories(norn_executor PUBLIC ${CMAKE_CURRENT_LIST_DIR})
target_compile_options(norn_executor PRIVATE ${NORN_WARNINGS})
target_link_libraries(norn_executor PUBLIC norn_common PkgConfig::JANSSON Threads::Threads)

# Applies limits, the cgroup and the uid between posix_spawn and the agent;
# nornd finds it next to its own executable.
add_executable(norn-run-wrapper ${CMAKE_CURRENT_LIST_DIR}/run_wrapper.c)
target_compile_options(norn-run-wrapper PRIVATE ${NORN_WARNINGS})
# Never instrumented: the sanitizer runtimes need far more address space
# than the RLIMIT_AS the wrapper sets before it execs (or reports an error).
if(NORN_SANITIZE)
  target_compile_options(norn-run-wrapper PRIVATE -fno-sanitize=all)
  target_link_options(norn-run-wrapper PRIVATE -fno-sanitize=all)
endif()

norn_cmocka_test(test_executor SOURCES tests/unit/test_executor.c
  LIBS norn_executor Threads::Threads LABELS integration)
add_dependencies(test_executor norn-run-wrapper)
target_compile_definitions(test_executor PRIVATE
  NORN_RUN_WRAPPER="$<TARGET_FILE:norn-run-wrapper>"
  NORN_RUN_AGENTS="${CMAKE_SOURCE_DIR}/tests/fixtures/run-agents")

# nornd serves runs (server/run_service.c) on this executor and finds the
# wrapper next to its own binary.
target_link_libraries(nornd_core PUBLIC norn_executor)
add_dependencies(nornd norn-run-wrapper)
