/*
 * sigv4.c — AWS Signature Version 4 (see sigv4.h), with OpenSSL 3's EVP
 * digests and HMAC.
 */
#include "sigv4.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analyzer.h"

static void hex(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = 0;
}

static int sha256_hex(const void *data, size_t n, char out[65])
{
    unsigned char md[32];
    unsigned int len = 0;
    if (!EVP_Digest(data, n, md, &len, EVP_sha256(), NULL) || len != 32)
        return -1;
    hex(md, 32, out);
    return 0;
}

static int hmac(const void *key, size_t klen, const char *msg, unsigned char out[32])
{
    unsigned int len = 0;
    return HMAC(EVP_sha256(), key, (int)klen, (const unsigned char *)msg, strlen(msg), out, &len) &&
                   len == 32
               ? 0
               : -1;
}

/* Each path segment URI-encoded again (RFC 3986 unreserved kept, '/'
 * kept), as SigV4 asks of every service but S3. */
static void encode_path(AnalyzerText *t, const char *path)
{
    static const char digits[] = "0123456789ABCDEF";
    if (!*path)
        path = "/";
    for (const unsigned char *p = (const unsigned char *)path; *p; p++) {
        unsigned char c = *p;
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '_' || c == '.' || c == '~' || c == '/') {
            analyzer_text_append(t, (const char *)p, 1);
        } else {
            char e[3] = {'%', digits[c >> 4], digits[c & 15]};
            analyzer_text_append(t, e, 3);
        }
    }
}

static int has_token(const SigV4Keys *k)
{
    return k->session_token && k->session_token[0];
}

static const char *signed_headers(const SigV4Request *r, const SigV4Keys *k)
{
    if (r->content_type)
        return has_token(k) ? "content-type;host;x-amz-date;x-amz-security-token"
                            : "content-type;host;x-amz-date";
    return has_token(k) ? "host;x-amz-date;x-amz-security-token" : "host;x-amz-date";
}

char *sigv4_canonical_request(const SigV4Request *r, const SigV4Keys *k, const char *amz_date)
{
    char payload[65];
    if (sha256_hex(r->body ? r->body : "", r->body ? r->body_len : 0, payload) != 0)
        return NULL;
    AnalyzerText t = {0};
    analyzer_text_appendf(&t, "%s\n", r->method);
    encode_path(&t, r->path);
    analyzer_text_appendf(&t, "\n%s\n", r->query ? r->query : "");
    if (r->content_type)
        analyzer_text_appendf(&t, "content-type:%s\n", r->content_type);
    analyzer_text_appendf(&t, "host:%s\nx-amz-date:%s\n", r->host, amz_date);
    if (has_token(k))
        analyzer_text_appendf(&t, "x-amz-security-token:%s\n", k->session_token);
    analyzer_text_appendf(&t, "\n%s\n%s", signed_headers(r, k), payload);
    return analyzer_text_take(&t);
}

int sigv4_sign(const SigV4Request *r, const SigV4Keys *k, time_t when, char amz_date[17],
               char *authorization, size_t cap)
{
    struct tm tm;
    if (!gmtime_r(&when, &tm) || strftime(amz_date, 17, "%Y%m%dT%H%M%SZ", &tm) != 16)
        return -1;
    char day[9];
    memcpy(day, amz_date, 8);
    day[8] = 0;
    char *canonical = sigv4_canonical_request(r, k, amz_date);
    if (!canonical)
        return -1;
    char creq_hash[65];
    int rc = sha256_hex(canonical, strlen(canonical), creq_hash);
    free(canonical);
    if (rc != 0)
        return -1;
    char scope[256], to_sign[512];
    if ((size_t)snprintf(scope, sizeof scope, "%s/%s/%s/aws4_request", day, k->region,
                         k->service) >= sizeof scope ||
        (size_t)snprintf(to_sign, sizeof to_sign, "AWS4-HMAC-SHA256\n%s\n%s\n%s", amz_date, scope,
                         creq_hash) >= sizeof to_sign)
        return -1;
    char secret[300];
    if ((size_t)snprintf(secret, sizeof secret, "AWS4%s", k->secret_key) >= sizeof secret)
        return -1;
    unsigned char kdate[32], kregion[32], kservice[32], ksigning[32], sig[32];
    rc = hmac(secret, strlen(secret), day, kdate) | hmac(kdate, 32, k->region, kregion) |
         hmac(kregion, 32, k->service, kservice) | hmac(kservice, 32, "aws4_request", ksigning) |
         hmac(ksigning, 32, to_sign, sig);
    memset(secret, 0, sizeof secret);
    if (rc != 0)
        return -1;
    char sig_hex[65];
    hex(sig, 32, sig_hex);
    if ((size_t)snprintf(authorization, cap,
                         "AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s",
                         k->access_key, scope, signed_headers(r, k), sig_hex) >= cap)
        return -1;
    return 0;
}
