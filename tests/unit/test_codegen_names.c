/*
 * test_codegen_names.c — protoc-gen-norn-grpc's name mangling against
 * protobuf-c.
 *
 * Every expected value below was copied from real protoc-c 1.4.1 output
 * (the .pb-c.h files it generated for test protos), not derived from the
 * rules: the generated gRPC code only compiles if it names protoc-c's types
 * and descriptors exactly, quirks included.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>

#include "names.h"

typedef struct Case {
    const char *full_name;
    const char *type;  /* typedef struct <type> */
    const char *lower; /* <lower>__descriptor */
    const char *upper; /* <UPPER>__INIT */
} Case;

static void check_cases(const Case *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char *type = mangle_type_name(cases[i].full_name);
        char *lower = mangle_lower(cases[i].full_name);
        char *upper = mangle_upper(cases[i].full_name);
        assert_string_equal(type, cases[i].type);
        assert_string_equal(lower, cases[i].lower);
        assert_string_equal(upper, cases[i].upper);
        free(type);
        free(lower);
        free(upper);
    }
}

#define CHECK(cases) check_cases((cases), sizeof(cases) / sizeof((cases)[0]))

static void test_plain_package(void **state)
{
    (void)state;
    static const Case cases[] = {
        {"norn.v1.OpenSessionRequest", "Norn__V1__OpenSessionRequest",
         "norn__v1__open_session_request", "NORN__V1__OPEN_SESSION_REQUEST"},
        {"norn.v1.SessionService", "Norn__V1__SessionService", "norn__v1__session_service",
         "NORN__V1__SESSION_SERVICE"},
        {"foo.v2.TestService", "Foo__V2__TestService", "foo__v2__test_service",
         "FOO__V2__TEST_SERVICE"},
    };
    CHECK(cases);
}

static void test_nested_messages(void **state)
{
    (void)state;
    static const Case cases[] = {
        {"foo.v2.Outer.Inner", "Foo__V2__Outer__Inner", "foo__v2__outer__inner",
         "FOO__V2__OUTER__INNER"},
        {"foo.v2.Outer.Inner.Deep2Thing", "Foo__V2__Outer__Inner__Deep2Thing",
         "foo__v2__outer__inner__deep2_thing", "FOO__V2__OUTER__INNER__DEEP2_THING"},
    };
    CHECK(cases);
}

/* protoc passes type references fully qualified, with a leading dot. */
static void test_leading_dot(void **state)
{
    (void)state;
    static const Case cases[] = {
        {".foo.v2.Outer.Inner", "Foo__V2__Outer__Inner", "foo__v2__outer__inner",
         "FOO__V2__OUTER__INNER"},
    };
    CHECK(cases);
}

/* A run of capitals gets no underscores inside it ("HTTPRequest" is
 * "httprequest", not "http_request"). */
static void test_acronyms(void **state)
{
    (void)state;
    static const Case cases[] = {
        {"foo.v2.HTTPRequest", "Foo__V2__HTTPRequest", "foo__v2__httprequest",
         "FOO__V2__HTTPREQUEST"},
        {"foo.v2.getHTTPResponse2XX", "Foo__V2__GetHTTPResponse2XX",
         "foo__v2__get_httpresponse2_xx", "FOO__V2__GET_HTTPRESPONSE2_XX"},
        {"foo.v2.HTTPService_v2", "Foo__V2__HTTPServiceV2", "foo__v2__httpservice_v2",
         "FOO__V2__HTTPSERVICE_V2"},
    };
    CHECK(cases);
}

/* Digits count as lower case: a capital after a digit starts a new word. */
static void test_digits(void **state)
{
    (void)state;
    static const Case cases[] = {
        {"foo.v2.Foo2Bar", "Foo__V2__Foo2Bar", "foo__v2__foo2_bar", "FOO__V2__FOO2_BAR"},
    };
    CHECK(cases);
}

/* The type name drops underscores; the lower/upper forms keep them and add
 * one more before a capital that follows one. */
static void test_underscores(void **state)
{
    (void)state;
    static const Case cases[] = {
        {"foo.v2.my_msg", "Foo__V2__MyMsg", "foo__v2__my_msg", "FOO__V2__MY_MSG"},
        {"foo.v2.A_B__c", "Foo__V2__ABC", "foo__v2__a__b__c", "FOO__V2__A__B__C"},
        {"foo_bar.baz_Qux.Thing_one", "FooBar__BazQux__ThingOne", "foo_bar__baz__qux__thing_one",
         "FOO_BAR__BAZ__QUX__THING_ONE"},
    };
    CHECK(cases);
}

/* Messages from other packages carry their own package's prefix. */
static void test_other_package(void **state)
{
    (void)state;
    static const Case cases[] = {
        {"google.protobuf.Empty", "Google__Protobuf__Empty", "google__protobuf__empty",
         "GOOGLE__PROTOBUF__EMPTY"},
    };
    CHECK(cases);
}

static void test_no_package(void **state)
{
    (void)state;
    static const Case cases[] = {
        {"TopLevel", "TopLevel", "top_level", "TOP_LEVEL"},
        {"NoPkg", "NoPkg", "no_pkg", "NO_PKG"},
    };
    CHECK(cases);
}

/* Method names are one-piece names; these are protoc-c's service struct
 * members, which the handler members copy. */
static void test_method_names(void **state)
{
    (void)state;
    static const Case cases[] = {
        {"UnaryCall", "UnaryCall", "unary_call", "UNARY_CALL"},
        {"Get_HTTP2Thing", "GetHTTP2Thing", "get__http2_thing", "GET__HTTP2_THING"},
    };
    CHECK(cases);
}

static void check_c_package(const char *full, const char *package, const char *c_package,
                            const char *renamed, const char *type, const char *lower)
{
    char *got = mangle_c_package(full, package, c_package);
    assert_string_equal(got, renamed);
    char *t = mangle_type_name(got);
    char *l = mangle_lower(got);
    assert_string_equal(t, type);
    assert_string_equal(l, lower);
    free(l);
    free(t);
    free(got);
}

/* option (pb_c_file).c_package replaces the package in every C name. */
static void test_c_package(void **state)
{
    (void)state;
    check_c_package("orig.pkg.Msg", "orig.pkg", "my.cPkg", "my.cPkg.Msg", "My__CPkg__Msg",
                    "my__c_pkg__msg");
    check_c_package("orig.pkg.CSvc", "orig.pkg", "my.cPkg", "my.cPkg.CSvc", "My__CPkg__CSvc",
                    "my__c_pkg__csvc");
    check_c_package("TopTwo.In", "", "x.y", "x.y.TopTwo.In", "X__Y__TopTwo__In",
                    "x__y__top_two__in");
    check_c_package("foo.v2.Foo2Bar", "foo.v2", NULL, "foo.v2.Foo2Bar", "Foo__V2__Foo2Bar",
                    "foo__v2__foo2_bar");
}

static void test_file_names(void **state)
{
    (void)state;
    char *s = mangle_file_identifier("foo/v2/test.proto");
    assert_string_equal(s, "foo_2fv2_2ftest_2eproto");
    free(s);
    s = mangle_file_identifier("norn/v1/session_service.proto");
    assert_string_equal(s, "norn_2fv1_2fsession_5fservice_2eproto");
    free(s);

    s = mangle_strip_proto("norn/v1/session_service.proto");
    assert_string_equal(s, "norn/v1/session_service");
    free(s);
    s = mangle_strip_proto("old.protodevel");
    assert_string_equal(s, "old");
    free(s);
    s = mangle_strip_proto("no_suffix");
    assert_string_equal(s, "no_suffix");
    free(s);
}

int main(int argc, char **argv)
{
    /* One case per line: tests/tests.cmake finds the case names line by line. */
    /* clang-format off */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_package),
        cmocka_unit_test(test_nested_messages),
        cmocka_unit_test(test_leading_dot),
        cmocka_unit_test(test_acronyms),
        cmocka_unit_test(test_digits),
        cmocka_unit_test(test_underscores),
        cmocka_unit_test(test_other_package),
        cmocka_unit_test(test_no_package),
        cmocka_unit_test(test_method_names),
        cmocka_unit_test(test_c_package),
        cmocka_unit_test(test_file_names),
    };
    /* clang-format on */
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests_name("codegen_names", tests, NULL, NULL);
}
