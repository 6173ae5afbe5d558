/* test_reflection.c — the symbol index over the descriptor set the build
 * embeds: every service, method and message resolves to its file, and a
 * file's closure carries its dependencies. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "norn_descriptor_set.h"
#include "reflection.h"

static int setup(void **state)
{
    Reflection *r = reflection_new(norn_descriptor_set, norn_descriptor_set_count);
    if (!r)
        return -1;
    *state = r;
    return 0;
}

static int teardown(void **state)
{
    reflection_free(*state);
    return 0;
}

static const char *file_of(Reflection *r, const char *symbol)
{
    int i = reflection_file_by_symbol(r, symbol);
    return i < 0 ? NULL : reflection_file(r, i)->name;
}

static void test_symbols_resolve_to_files(void **state)
{
    Reflection *r = *state;
    assert_string_equal(file_of(r, "norn.v1.SessionService"), "norn/v1/session_service.proto");
    assert_string_equal(file_of(r, "norn.v1.SessionService.WatchSessions"),
                        "norn/v1/session_service.proto");
    assert_string_equal(file_of(r, ".norn.v1.OpenSessionRequest"), "norn/v1/session_service.proto");
    assert_string_equal(file_of(r, "norn.v1.Session"), "norn/v1/common.proto");
    assert_string_equal(file_of(r, "grpc.health.v1.Health.Watch"), "grpc/health/v1/health.proto");
    assert_string_equal(file_of(r, "grpc.health.v1.HealthCheckResponse.ServingStatus"),
                        "grpc/health/v1/health.proto");
    assert_string_equal(file_of(r, "google.protobuf.Struct"), "google/protobuf/struct.proto");
    assert_null(file_of(r, "norn.v1.Nope"));
    assert_null(file_of(r, "norn.v1"));
}

static void test_closure_includes_dependencies(void **state)
{
    Reflection *r = *state;
    int f = reflection_file_by_name(r, "norn/v1/session_service.proto");
    assert_true(f >= 0);
    int out[64];
    size_t n = reflection_closure(r, f, out, 64);
    assert_int_equal(out[0], f);
    int has_common = 0, has_struct = 0, has_ts = 0;
    for (size_t i = 0; i < n; i++) {
        const char *name = reflection_file(r, out[i])->name;
        has_common |= strcmp(name, "norn/v1/common.proto") == 0;
        has_struct |= strcmp(name, "google/protobuf/struct.proto") == 0;
        has_ts |= strcmp(name, "google/protobuf/timestamp.proto") == 0;
        for (size_t k = 0; k < i; k++)
            assert_int_not_equal(out[k], out[i]); /* each file once */
    }
    assert_true(has_common && has_struct && has_ts);
    assert_int_equal(reflection_file_by_name(r, "nope.proto"), -1);
    assert_int_equal(reflection_closure(r, -1, out, 64), 0);
}

static void test_service_list(void **state)
{
    Reflection *r = *state;
    assert_int_equal(reflection_service_count(r), 0);
    reflection_add_service(r, "norn.v1.StatsService");
    assert_int_equal(reflection_service_count(r), 1);
    assert_string_equal(reflection_service_name(r, 0), "norn.v1.StatsService");
}

int main(int argc, char **argv)
{
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_symbols_resolve_to_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_closure_includes_dependencies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_service_list, setup, teardown),
    };
    return cmocka_run_group_tests_name("reflection", tests, NULL, NULL);
}
