# server/importer/module.cmake — static discovery of imported agents
# (norn_discovery) and the tree-sitter-python grammar it parses with.
#
# The grammar is fetched and compiled by the build, never committed:
# fetch-grammar.sh runs `npm pack tree-sitter-python@<pinned>` into the build
# tree (or copies the tarball from NORN_NPM_CACHE), checks its sha256 and
# unpacks src/. 0.23.6 is the newest release with ABI 14, the highest Debian's
# libtree-sitter 0.20.7 accepts (0.25 is ABI 15).

if(NOT TARGET PkgConfig::TREE_SITTER)
  pkg_check_modules(TREE_SITTER REQUIRED IMPORTED_TARGET tree-sitter)
endif()

set(TS_PYTHON_VERSION 0.23.6)
set(TS_PYTHON_SHA256 aab5b860d93dbf84b37fed532f7dacc0468ede5387d0c74911d68f964287662a)
set(NORN_NPM_CACHE "$ENV{NORN_NPM_CACHE}" CACHE PATH
  "Directory holding tree-sitter-python-${TS_PYTHON_VERSION}.tgz for offline builds")
set(TS_PYTHON_DIR ${CMAKE_BINARY_DIR}/tree-sitter-python)
set(TS_PYTHON_SRC ${TS_PYTHON_DIR}/package/src)

add_custom_command(
  OUTPUT ${TS_PYTHON_SRC}/parser.c ${TS_PYTHON_SRC}/scanner.c
  COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/fetch-grammar.sh ${TS_PYTHON_DIR}
          ${TS_PYTHON_VERSION} ${TS_PYTHON_SHA256} "${NORN_NPM_CACHE}"
  DEPENDS ${CMAKE_CURRENT_LIST_DIR}/fetch-grammar.sh
  COMMENT "fetch tree-sitter-python ${TS_PYTHON_VERSION} (npm pack, sha256 checked)" VERBATIM)

# Generated third-party code: not held to our warning flags. scanner.c's
# array_pop() leaves values unused, hence -Wno-unused-value.
add_library(tree_sitter_python STATIC ${TS_PYTHON_SRC}/parser.c ${TS_PYTHON_SRC}/scanner.c)
target_include_directories(tree_sitter_python PRIVATE ${TS_PYTHON_SRC})
set_source_files_properties(${TS_PYTHON_SRC}/scanner.c PROPERTIES COMPILE_OPTIONS -Wno-unused-value)

file(GLOB NORN_DISCOVERY_SRCS CONFIGURE_DEPENDS ${CMAKE_CURRENT_LIST_DIR}/discovery*.c)
add_library(norn_discovery STATIC ${NORN_DISCOVERY_SRCS})
target_include_directories(norn_discovery PUBLIC ${CMAKE_CURRENT_LIST_DIR})
target_compile_options(norn_discovery PRIVATE ${NORN_WARNINGS})
target_link_libraries(norn_discovery PUBLIC norn_proto norn_common
  PRIVATE tree_sitter_python PkgConfig::TREE_SITTER)

norn_cmocka_test(test_discovery SOURCES tests/unit/test_discovery.c LIBS norn_discovery LABELS unit)
target_compile_definitions(test_discovery PRIVATE
  NORN_AGENT_FIXTURES="${CMAKE_SOURCE_DIR}/tests/fixtures/agents")
include(${CMAKE_CURRENT_LIST_DIR}/git_import.cmake)

# nornd serves ImportAgent (server/agent_import.c) with both.
target_link_libraries(nornd_core PUBLIC norn_discovery norn_git_import)
