/*
 * sigv4.h — AWS Signature Version 4 for the Bedrock Runtime requests.
 *
 * Why not libcurl's CURLOPT_AWS_SIGV4: Debian 12's libcurl (7.88) puts the
 * request path into the canonical request as sent. AWS (and botocore)
 * URI-encode every path segment once more for every service but S3, and a
 * Bedrock model id contains ':' (sent as %3A, canonical %253A), so curl's
 * signature is refused. This signer follows the published algorithm; its
 * test reproduces AWS's documented example and the fake Bedrock server
 * checks every request with botocore.
 */
#ifndef NORN_SIGV4_H
#define NORN_SIGV4_H

#include <stddef.h>
#include <time.h>

typedef struct SigV4Request {
    const char *method;       /* "POST" */
    const char *host;         /* the Host header as sent ("h:port" when not default) */
    const char *path;         /* percent-encoded as sent on the wire */
    const char *query;        /* canonical query string, "" when none */
    const char *content_type; /* signed when not NULL */
    const char *body;
    size_t body_len;
} SigV4Request;

typedef struct SigV4Keys {
    const char *access_key, *secret_key;
    const char *session_token; /* NULL or "": none */
    const char *region, *service;
} SigV4Keys;

/* Signs `r` at time `when` (UTC). Writes "YYYYMMDDTHHMMSSZ" into amz_date
 * (17 bytes) and the Authorization header value ("AWS4-HMAC-SHA256
 * Credential=..., SignedHeaders=..., Signature=...") into authorization.
 * The caller sends Host, X-Amz-Date, Content-Type (if given) and
 * X-Amz-Security-Token (if a session token is given) with exactly these
 * values. 0, or -1 when a buffer is too small or hashing fails. */
int sigv4_sign(const SigV4Request *r, const SigV4Keys *k, time_t when, char amz_date[17],
               char *authorization, size_t cap);

/* The canonical request (for tests and debugging), malloc'd. */
char *sigv4_canonical_request(const SigV4Request *r, const SigV4Keys *k, const char *amz_date);

#endif
