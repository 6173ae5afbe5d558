/*
 * test_sigv4.c — the SigV4 signer against AWS's published example and a
 * Bedrock-shaped request whose expected values botocore computed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sigv4.h"

#define AKID "AKIDEXAMPLE"
#define SECRET "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"

/* docs.aws.amazon.com, "Create a signed AWS API request": IAM ListUsers. */
static void aws_documented_example(void **state)
{
    (void)state;
    SigV4Request r = {"GET",
                      "iam.amazonaws.com",
                      "/",
                      "Action=ListUsers&Version=2010-05-08",
                      "application/x-www-form-urlencoded; charset=utf-8",
                      "",
                      0};
    SigV4Keys k = {AKID, SECRET, NULL, "us-east-1", "iam"};
    char date[17], auth[600];
    assert_int_equal(sigv4_sign(&r, &k, 1440938160, date, auth, sizeof auth), 0);
    assert_string_equal(date, "20150830T123600Z");
    assert_string_equal(auth, "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/"
                              "aws4_request, SignedHeaders=content-type;host;x-amz-date, "
                              "Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b592"
                              "4a6f2b5d7");
}

static const char body[] = "{\"messages\":[]}";

static void bedrock_path_is_encoded_again(void **state)
{
    (void)state;
    SigV4Request r = {"POST",
                      "127.0.0.1:8089",
                      "/model/us.amazon.nova-2-lite-v1%3A0/converse",
                      "",
                      "application/json",
                      body,
                      sizeof body - 1};
    SigV4Keys k = {AKID, SECRET, "TOKEN123", "us-west-2", "bedrock"};
    char *c = sigv4_canonical_request(&r, &k, "20261203T120000Z");
    assert_non_null(c);
    assert_string_equal(c, "POST\n/model/us.amazon.nova-2-lite-v1%253A0/converse\n\n"
                           "content-type:application/json\nhost:127.0.0.1:8089\n"
                           "x-amz-date:20261203T120000Z\nx-amz-security-token:TOKEN123\n\n"
                           "content-type;host;x-amz-date;x-amz-security-token\n"
                           "5e4ce7b36ba37b78a5d5f9fd08e6b7b54ba6879d651aa46ec9e1d6fa24ebe30a");
    free(c);
    char date[17], auth[600];
    assert_int_equal(sigv4_sign(&r, &k, 1796299200, date, auth, sizeof auth), 0);
    assert_non_null(strstr(auth, "Credential=AKIDEXAMPLE/20261203/us-west-2/bedrock/aws4_request"));
    assert_non_null(
        strstr(auth, "Signature=eaea23be3fa5d59e492cf33ef1fd32577374d3edb4d053a81a36e95f53eebe37"));
}

static void body_and_token_change_the_signature(void **state)
{
    (void)state;
    SigV4Request r = {"POST", "h", "/p", "", "application/json", body, sizeof body - 1};
    SigV4Keys k = {AKID, SECRET, NULL, "us-east-1", "bedrock"};
    char d[17], a[600], b[600], c[600];
    assert_int_equal(sigv4_sign(&r, &k, 1796299200, d, a, sizeof a), 0);
    assert_null(strstr(a, "x-amz-security-token"));
    r.body_len--;
    assert_int_equal(sigv4_sign(&r, &k, 1796299200, d, b, sizeof b), 0);
    assert_string_not_equal(a, b);
    r.body_len++;
    k.session_token = "T";
    assert_int_equal(sigv4_sign(&r, &k, 1796299200, d, c, sizeof c), 0);
    assert_non_null(strstr(c, "SignedHeaders=content-type;host;x-amz-date;x-amz-security-token"));
    /* Too small a buffer is an error, never a cut signature. */
    assert_int_equal(sigv4_sign(&r, &k, 1796299200, d, c, 40), -1);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(aws_documented_example),
        cmocka_unit_test(bedrock_path_is_encoded_again),
        cmocka_unit_test(body_and_token_change_the_signature),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
