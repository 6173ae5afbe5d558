/* ids.c — see ids.h. */
#include "ids.h"

#include <stdint.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

int id_valid(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++) {
        char c = s[n];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '.' || c == '_' || c == ':' || c == '-';
        if (!ok || n >= ID_MAX_LEN)
            return 0;
    }
    return n > 0;
}

/* Random bytes from a per-thread pool, refilled 4 KiB at a time: one
 * getrandom per id was a measurable share of ingest. */
static void random_bytes(uint8_t *out, size_t n)
{
    static __thread uint8_t pool[4096];
    static __thread size_t left;
    if (left < n) {
        if (getrandom(pool, sizeof pool, 0) != (ssize_t)sizeof pool) {
            /* Only before the kernel's pool is seeded: mix in the clock. */
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            for (size_t i = 0; i < sizeof pool; i++)
                pool[i] ^= (uint8_t)(ts.tv_nsec >> (i % 4 * 8)) ^ (uint8_t)i;
        }
        left = sizeof pool;
    }
    memcpy(out, pool + sizeof pool - left, n);
    left -= n;
}

void id_generate(char *out)
{
    static const char alphabet[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t ms = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
    uint8_t rnd[10];
    random_bytes(rnd, sizeof rnd);
    /* 10 chars of time (50 bits, top 2 zero), 16 chars of randomness. */
    for (int i = 9; i >= 0; i--) {
        out[i] = alphabet[ms & 31];
        ms >>= 5;
    }
    uint32_t acc = 0;
    int bits = 0, o = 10;
    for (size_t i = 0; i < sizeof rnd; i++) {
        acc = acc << 8 | rnd[i];
        bits += 8;
        while (bits >= 5) {
            bits -= 5;
            out[o++] = alphabet[(acc >> bits) & 31];
        }
    }
    out[o] = '\0';
}
