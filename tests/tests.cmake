# Test registration, included from the top-level CMakeLists.txt.
#
# cmocka suites get one ctest entry per case: the case names are read from
# the source (cmocka_unit_test*(name)) and passed as argv[1], which each
# suite hands to cmocka_set_test_filter().
function(norn_cmocka_test name)
  cmake_parse_arguments(T "" "" "SOURCES;LIBS;ENV;LABELS" ${ARGN})
  add_executable(${name} ${T_SOURCES})
  target_compile_options(${name} PRIVATE ${NORN_WARNINGS})
  target_include_directories(${name} PRIVATE ${CMAKE_SOURCE_DIR}/tests/integration)
  target_link_libraries(${name} PRIVATE ${T_LIBS} PkgConfig::CMOCKA)
  set(cases)
  foreach(src ${T_SOURCES})
    # Re-configure when a suite's cases change, so ctest lists them all.
    set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${src})
    file(STRINGS ${src} lines REGEX "cmocka_unit_test(_setup|_teardown|_setup_teardown|_prestate)?\\(")
    foreach(line ${lines})
      string(REGEX MATCH "cmocka_unit_test[a-z_]*\\(([A-Za-z0-9_]+)" _ ${line})
      list(APPEND cases ${CMAKE_MATCH_1})
    endforeach()
  endforeach()
  if(NOT cases)
    message(FATAL_ERROR "${name}: no cmocka_unit_test() cases found")
  endif()
  foreach(case ${cases})
    add_test(NAME ${name}.${case} COMMAND ${name} ${case})
    set_tests_properties(${name}.${case} PROPERTIES
      ENVIRONMENT "NORND=$<TARGET_FILE:nornd>;NORN_CLI=$<TARGET_FILE:norn>;${T_ENV}"
      TIMEOUT 120 LABELS "${T_LABELS}")
  endforeach()
endfunction()

norn_cmocka_test(test_common SOURCES tests/unit/test_common.c LIBS norn_common LABELS unit)
norn_cmocka_test(test_reflection SOURCES tests/unit/test_reflection.c LIBS nornd_core LABELS unit)
if(EXISTS ${CMAKE_SOURCE_DIR}/tests/unit/test_codegen_names.c)
  norn_cmocka_test(test_codegen_names
    SOURCES tests/unit/test_codegen_names.c
            ${CMAKE_SOURCE_DIR}/tools/protoc-gen-norn-grpc/names.c
            ${CMAKE_SOURCE_DIR}/tools/protoc-gen-norn-grpc/strbuf.c
    LIBS norn_common LABELS unit)
  target_include_directories(test_codegen_names PRIVATE ${CMAKE_SOURCE_DIR}/tools/protoc-gen-norn-grpc)
endif()

norn_cmocka_test(test_server_c
  SOURCES tests/integration/test_server.c tests/integration/harness.c
  LIBS norn_client LABELS integration)
add_dependencies(test_server_c nornd norn)
target_compile_definitions(test_server_c PRIVATE NORN_SOURCE_DIR="${CMAKE_SOURCE_DIR}")

# SessionService and WatchSessions end to end through the generated C stubs.
foreach(suite sessions watch)
  norn_cmocka_test(test_${suite}_c
    SOURCES tests/integration/test_${suite}_c.c tests/integration/harness.c
    LIBS norn_client Threads::Threads LABELS integration)
  add_dependencies(test_${suite}_c nornd)
endforeach()

# Foreign clients: Python grpcio (Debian's, hence /usr/bin/python3) and Node grpc-js.
set(NORN_PYTHON /usr/bin/python3 CACHE FILEPATH "Python that sees Debian's grpcio")
file(GLOB PY_TESTS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/python/test_*.py)
foreach(py ${PY_TESTS})
  get_filename_component(stem ${py} NAME_WE)
  add_test(NAME python.${stem} COMMAND ${NORN_PYTHON} -m unittest -v ${stem}
           WORKING_DIRECTORY ${CMAKE_SOURCE_DIR}/tests/python)
  set_tests_properties(python.${stem} PROPERTIES
    ENVIRONMENT "NORND=$<TARGET_FILE:nornd>;NORN_CLI=$<TARGET_FILE:norn>;NORN_PROTO_DIR=${CMAKE_SOURCE_DIR}/proto;NORN_PY_GEN=${CMAKE_BINARY_DIR}/pygen"
    TIMEOUT 300 LABELS integration)
endforeach()

find_program(NODE node)
find_program(NPM npm)
if(NODE AND NPM AND EXISTS ${CMAKE_SOURCE_DIR}/tests/node/package.json)
  # `make node-deps` (npm ci, a no-op when node_modules is current) as a
  # fixture, so a plain `ctest` after `make build` has the modules too.
  add_test(NAME node.deps COMMAND make -s -C ${CMAKE_SOURCE_DIR} node-deps)
  set_tests_properties(node.deps PROPERTIES FIXTURES_SETUP node_modules TIMEOUT 600
                       LABELS integration)
  file(GLOB NODE_TESTS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/node/*.test.js)
  foreach(js ${NODE_TESTS})
    get_filename_component(stem ${js} NAME_WE)
    add_test(NAME node.${stem} COMMAND ${NODE} --test ${js}
             WORKING_DIRECTORY ${CMAKE_SOURCE_DIR}/tests/node)
    set_tests_properties(node.${stem} PROPERTIES
      ENVIRONMENT "NORND=$<TARGET_FILE:nornd>;NORN_PROTO_DIR=${CMAKE_SOURCE_DIR}/proto;NODE_PATH=${CMAKE_SOURCE_DIR}/tests/node/node_modules"
      FIXTURES_REQUIRED node_modules TIMEOUT 300 LABELS integration)
  endforeach()
endif()

# ---- the adapter test: a test-only service, generated like the real API -----
# tests/proto/norn/test/v1/echo.proto (one RPC of each kind) through protoc-c
# and protoc-gen-norn-grpc into ${CMAKE_BINARY_DIR}/testgen, served in-process
# by the real adapter (nornd_core) and called through the generated client
# stubs (norn_client).
set(TESTGEN ${CMAKE_BINARY_DIR}/testgen)
set(TEST_PROTO_DIR ${CMAKE_SOURCE_DIR}/tests/proto)
set(TEST_PROTOS norn/test/v1/echo.proto)
file(MAKE_DIRECTORY ${TESTGEN})
set(TESTGEN_SRCS)
foreach(proto ${TEST_PROTOS})
  string(REGEX REPLACE "\\.proto$" "" base ${proto})
  add_custom_command(
    OUTPUT ${TESTGEN}/${base}.pb-c.c ${TESTGEN}/${base}.pb-c.h
    COMMAND ${PROTOC} -I${TEST_PROTO_DIR} -I${WKT_DIR}
            --plugin=protoc-gen-c=${PROTOC_GEN_C} --c_out=${TESTGEN} ${TEST_PROTO_DIR}/${proto}
    DEPENDS ${TEST_PROTO_DIR}/${proto}
    COMMENT "protoc-c (test) ${proto}" VERBATIM)
  add_custom_command(
    OUTPUT ${TESTGEN}/${base}.grpc-c.c ${TESTGEN}/${base}.grpc-c.h
    COMMAND ${PROTOC} -I${TEST_PROTO_DIR} -I${WKT_DIR}
            --plugin=protoc-gen-norn-grpc=$<TARGET_FILE:protoc-gen-norn-grpc>
            --norn-grpc_out=${TESTGEN} ${TEST_PROTO_DIR}/${proto}
    DEPENDS protoc-gen-norn-grpc ${TEST_PROTO_DIR}/${proto}
    COMMENT "protoc-gen-norn-grpc (test) ${proto}" VERBATIM)
  list(APPEND TESTGEN_SRCS ${TESTGEN}/${base}.pb-c.c ${TESTGEN}/${base}.grpc-c.c)
endforeach()
add_library(norn_test_proto STATIC ${TESTGEN_SRCS})
target_include_directories(norn_test_proto PUBLIC ${TESTGEN} ${CMAKE_SOURCE_DIR}/common)
target_link_libraries(norn_test_proto PUBLIC PkgConfig::PROTOBUF_C)

norn_cmocka_test(test_adapter
  SOURCES tests/integration/test_adapter.c
  LIBS norn_test_proto nornd_core norn_client LABELS integration)
