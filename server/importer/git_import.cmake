# git_import.cmake — the git clone module of the importer (libgit2) and its
# test; included from server/importer/module.cmake.
if(NOT TARGET PkgConfig::LIBGIT2)
  pkg_check_modules(LIBGIT2 REQUIRED IMPORTED_TARGET libgit2)
endif()

add_library(norn_git_import STATIC ${CMAKE_SOURCE_DIR}/server/importer/git_import.c)
target_include_directories(norn_git_import PUBLIC ${CMAKE_SOURCE_DIR}/server/importer)
target_compile_options(norn_git_import PRIVATE ${NORN_WARNINGS})
target_link_libraries(norn_git_import PUBLIC norn_common PkgConfig::LIBGIT2)

# Builds real repositories with the git CLI in a temporary directory.
norn_cmocka_test(test_git_import
  SOURCES ${CMAKE_SOURCE_DIR}/tests/unit/test_git_import.c
  LIBS norn_git_import LABELS unit)
