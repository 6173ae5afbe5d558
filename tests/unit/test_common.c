/* test_common.c — the error table, constant-time comparison, logfmt
 * quoting and bounded file reads. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "log.h"
#include "util.h"

static void test_error_table_maps_every_error(void **state)
{
    (void)state;
    static const struct {
        int err;
        RpcCode code;
    } want[] = {
        {NORN_OK, RPC_OK},
        {NORN_ERR_INVALID, RPC_INVALID_ARGUMENT},
        {NORN_ERR_NOT_FOUND, RPC_NOT_FOUND},
        {NORN_ERR_PRECONDITION, RPC_FAILED_PRECONDITION},
        {NORN_ERR_OUT_OF_RANGE, RPC_OUT_OF_RANGE},
        {NORN_ERR_EXHAUSTED, RPC_RESOURCE_EXHAUSTED},
        {NORN_ERR_UNAUTHENTICATED, RPC_UNAUTHENTICATED},
        {NORN_ERR_STORAGE, RPC_UNAVAILABLE},
        {NORN_ERR_INTERNAL, RPC_INTERNAL},
        {NORN_ERR_UNAVAILABLE, RPC_UNAVAILABLE},
        {NORN_ERR_EXISTS, RPC_ALREADY_EXISTS},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        assert_int_equal(norn_error_to_rpc(want[i].err), want[i].code);
    assert_int_equal(norn_error_to_rpc(-9999), RPC_INTERNAL);
    assert_string_equal(norn_error_name(NORN_ERR_NOT_FOUND), "not found");
}

static void test_rpc_code_names(void **state)
{
    (void)state;
    assert_string_equal(rpc_code_name(RPC_OK), "OK");
    assert_string_equal(rpc_code_name(RPC_UNAUTHENTICATED), "UNAUTHENTICATED");
    assert_string_equal(rpc_code_name(RPC_UNIMPLEMENTED), "UNIMPLEMENTED");
    assert_string_equal(rpc_code_name((RpcCode)99), "UNKNOWN");
}

static void test_ct_equal(void **state)
{
    (void)state;
    assert_true(ct_equal("abc", 3, "abc", 3));
    assert_false(ct_equal("abd", 3, "abc", 3));
    assert_false(ct_equal("ab", 2, "abc", 3));   /* a prefix is not the key */
    assert_false(ct_equal("abcd", 4, "abc", 3)); /* nor is a longer string */
    assert_false(ct_equal("", 0, "abc", 3));
    assert_true(ct_equal("", 0, "", 0));
}

static void test_log_quote(void **state)
{
    (void)state;
    char buf[32];
    assert_string_equal(log_quote("a \"b\"\n", buf, sizeof buf), "\"a \\\"b\\\" \"");
    assert_string_equal(log_quote("0123456789012345678901234567890123456789", buf, 12),
                        "\"012345678\"");
    LogLevel lv;
    assert_int_equal(log_level_parse("warn", &lv), 0);
    assert_int_equal(lv, LOG_WARN);
    assert_int_equal(log_level_parse("loud", &lv), -1);
}

static void test_read_file_limited(void **state)
{
    (void)state;
    char path[] = "/tmp/norn-read-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    char data[10000];
    memset(data, 'q', sizeof data);
    assert_int_equal(write(fd, data, sizeof data), (ssize_t)sizeof data);
    close(fd);
    size_t len = 0;
    char *s = read_file_limited(path, 20000, &len);
    assert_non_null(s);
    assert_int_equal(len, sizeof data);
    assert_int_equal(s[len], '\0');
    free(s);
    errno = 0;
    assert_null(read_file_limited(path, 9999, &len));
    assert_int_equal(errno, EFBIG);
    s = read_file_limited(path, 10000, &len);
    assert_non_null(s);
    free(s);
    unlink(path);
    assert_null(read_file_limited(path, 100, &len));
}

static void touch(const char *dir, const char *name)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0400); /* read-only files go too */
    assert_true(fd >= 0);
    close(fd);
}

static void test_remove_tree_at(void **state)
{
    (void)state;
    char outside[] = "/tmp/norn-keep-XXXXXX", tree[] = "/tmp/norn-tree-XXXXXX";
    assert_non_null(mkdtemp(outside));
    assert_non_null(mkdtemp(tree));
    touch(outside, "precious");
    char p[512], q[512];
    snprintf(p, sizeof p, "%s/a/b/c", tree);
    snprintf(q, sizeof q, "%s/a", tree);
    assert_int_equal(mkdir(q, 0700), 0);
    snprintf(q, sizeof q, "%s/a/b", tree);
    assert_int_equal(mkdir(q, 0700), 0);
    assert_int_equal(mkdir(p, 0700), 0);
    touch(p, "deep");
    touch(tree, "top");
    /* Links to a directory and a file outside: removed, never followed. */
    snprintf(p, sizeof p, "%s/link-dir", tree);
    assert_int_equal(symlink(outside, p), 0);
    snprintf(p, sizeof p, "%s/precious", outside);
    snprintf(q, sizeof q, "%s/link-file", tree);
    assert_int_equal(symlink(p, q), 0);

    assert_int_equal(remove_tree_at(AT_FDCWD, tree), 0);
    struct stat st;
    assert_int_equal(lstat(tree, &st), -1);
    assert_int_equal(errno, ENOENT);
    assert_int_equal(stat(p, &st), 0); /* the linked-to file is still there */
    /* Missing is fine; a file is removed as such. */
    assert_int_equal(remove_tree_at(AT_FDCWD, tree), 0);
    assert_int_equal(remove_tree_at(AT_FDCWD, p), 0);
    assert_int_equal(lstat(p, &st), -1);
    assert_int_equal(rmdir(outside), 0);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_error_table_maps_every_error),
        cmocka_unit_test(test_rpc_code_names),
        cmocka_unit_test(test_ct_equal),
        cmocka_unit_test(test_log_quote),
        cmocka_unit_test(test_read_file_limited),
        cmocka_unit_test(test_remove_tree_at),
    };
    return cmocka_run_group_tests_name("common", tests, NULL, NULL);
}
