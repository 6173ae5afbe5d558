# The Bedrock evaluator (reference §4, issue 7). norn_eval_prompt is its pure
# part: prompts, Converse bodies and answer validation (eval_prompt.c).
find_package(OpenSSL REQUIRED)

add_library(norn_eval_prompt STATIC ${CMAKE_SOURCE_DIR}/server/evaluator/eval_prompt.c)
target_include_directories(norn_eval_prompt PUBLIC ${CMAKE_SOURCE_DIR}/server/evaluator)
target_compile_options(norn_eval_prompt PRIVATE ${NORN_WARNINGS})
target_link_libraries(norn_eval_prompt
  PUBLIC norn_proto norn_common norn_analyzer PkgConfig::JANSSON OpenSSL::Crypto m)

if(EXISTS ${CMAKE_SOURCE_DIR}/tests/unit/test_eval_prompt.c)
  norn_cmocka_test(test_eval_prompt
    SOURCES tests/unit/test_eval_prompt.c
    LIBS norn_eval_prompt LABELS unit)
endif()

# The engine: queue, batching, cache and the libcurl multi transport
# (evaluator.c). nornd serves through it.
pkg_check_modules(LIBCURL REQUIRED IMPORTED_TARGET libcurl)
add_library(norn_evaluator STATIC ${CMAKE_SOURCE_DIR}/server/evaluator/evaluator.c)
target_compile_options(norn_evaluator PRIVATE ${NORN_WARNINGS})
target_link_libraries(norn_evaluator PUBLIC norn_eval_prompt PkgConfig::LIBCURL Threads::Threads)
target_link_libraries(nornd_core PUBLIC norn_evaluator)
target_sources(norn_evaluator PRIVATE ${CMAKE_SOURCE_DIR}/server/evaluator/sigv4.c)
target_link_libraries(norn_evaluator PUBLIC OpenSSL::Crypto)
norn_cmocka_test(test_sigv4 SOURCES tests/unit/test_sigv4.c LIBS norn_evaluator LABELS unit)
