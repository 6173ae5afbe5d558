/* config.c — see config.h. */
#include "config.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "msg.h"

struct ConfigHolder {
    pthread_rwlock_t lock;
    Norn__V1__Config *current; /* malloc-built, owned */
    Norn__V1__Config *retired; /* previous copy: callers may still read its strings */
};

void config_defaults(Norn__V1__Config *c)
{
    norn__v1__config__init(c);
    c->guard_mode = NORN__V1__GUARD_MODE__GUARD_MODE_MONITOR;
    c->max_steps = 50;
    c->enable_ai_eval = 1;
    c->enable_shadow_browser = 0;
    c->loop_window = 5;
    c->loop_threshold = 3;
    c->max_same_tool = 10;
    c->security_score_threshold = 70;
    c->relevance_score_threshold = 30;
    c->auto_intervene_on_loop = 0;
    c->log_retention_days = 30;
    c->audit_max_sessions = 100;
    c->max_steps_per_session = 10000;
    c->max_input_bytes = 256 * 1024;
    c->max_result_bytes = 1024 * 1024;
    c->revlog_max_entries = 100000;
    c->revlog_max_age_seconds = 86400;
    c->executor_slots = 2;
    c->executor_queue = 16;
    c->run_timeout_seconds = 300;
    c->bedrock_region = "us-east-1";
    c->bedrock_model_id = "us.amazon.nova-2-lite-v1:0";
    c->bedrock_batch_size = 8;
    c->bedrock_batch_wait_ms = 200;
    c->eval_threshold = NORN__V1__EVAL_THRESHOLD__EVAL_THRESHOLD_ALL;
    c->eval_sample_percent = 10;
    /* Illustrative prices (USD per million tokens); docs/bedrock.md says
     * where to look up the real ones. */
    c->eval_price_input_per_mtok = 0.30;
    c->eval_price_output_per_mtok = 2.50;
}

static int out_of_range(uint64_t v, uint64_t lo, uint64_t hi)
{
    return v < lo || v > hi;
}

#define CHECK_RANGE(field, lo, hi)                                                                 \
    do {                                                                                           \
        if (out_of_range(c->field, lo, hi)) {                                                      \
            snprintf(buf, cap, #field ": must be between %u and %u (got %u)", (unsigned)(lo),      \
                     (unsigned)(hi), (unsigned)c->field);                                          \
            return buf;                                                                            \
        }                                                                                          \
    } while (0)

const char *config_validate(const Norn__V1__Config *c, char *buf, size_t cap)
{
    if (c->guard_mode < NORN__V1__GUARD_MODE__GUARD_MODE_MONITOR ||
        c->guard_mode > NORN__V1__GUARD_MODE__GUARD_MODE_ENFORCE) {
        snprintf(buf, cap, "guard_mode: must be MONITOR, INTERVENE or ENFORCE");
        return buf;
    }
    CHECK_RANGE(max_steps, 1, 100000);
    CHECK_RANGE(loop_window, 2, 1000);
    CHECK_RANGE(loop_threshold, 2, 1000);
    CHECK_RANGE(max_same_tool, 1, 100000);
    CHECK_RANGE(security_score_threshold, 0, 100);
    CHECK_RANGE(relevance_score_threshold, 0, 100);
    CHECK_RANGE(log_retention_days, 0, 36500); /* 0 = keep forever */
    CHECK_RANGE(audit_max_sessions, 1, 1000000);
    CHECK_RANGE(max_steps_per_session, 1, 1000000);
    CHECK_RANGE(max_input_bytes, 64, 16u << 20);
    CHECK_RANGE(max_result_bytes, 64, 16u << 20);
    CHECK_RANGE(revlog_max_entries, 100, 100000000);
    CHECK_RANGE(revlog_max_age_seconds, 60, 365u * 86400u);
    CHECK_RANGE(executor_slots, 1, 64);
    CHECK_RANGE(executor_queue, 0, 10000);
    CHECK_RANGE(run_timeout_seconds, 1, 86400);
    CHECK_RANGE(bedrock_batch_size, 1, 100);
    CHECK_RANGE(bedrock_batch_wait_ms, 0, 60000);
    if ((int)c->eval_threshold < 0 ||
        c->eval_threshold > NORN__V1__EVAL_THRESHOLD__EVAL_THRESHOLD_SAMPLED) {
        snprintf(buf, cap, "eval_threshold: must be ALL, FLAGGED or SAMPLED");
        return buf;
    }
    CHECK_RANGE(eval_sample_percent, 0, 100); /* 0: the default, 10 */
    if (!(c->eval_price_input_per_mtok >= 0 && c->eval_price_input_per_mtok <= 1e6) ||
        !(c->eval_price_output_per_mtok >= 0 && c->eval_price_output_per_mtok <= 1e6)) {
        snprintf(buf, cap,
                 "eval_price_input_per_mtok, eval_price_output_per_mtok: must be "
                 "between 0 and 1000000");
        return buf;
    }
    if (strlen(c->bedrock_region) > 64 || strlen(c->bedrock_model_id) > 256 ||
        strlen(c->bedrock_endpoint) > 1024) {
        snprintf(buf, cap, "bedrock_region, bedrock_model_id or bedrock_endpoint: too long");
        return buf;
    }
    return NULL;
}

ConfigHolder *config_holder_new(const Norn__V1__Config *initial)
{
    ConfigHolder *h = msg_alloc(sizeof *h);
    pthread_rwlock_init(&h->lock, NULL);
    h->current = (Norn__V1__Config *)msg_clone(&initial->base);
    return h;
}

void config_holder_free(ConfigHolder *h)
{
    if (!h)
        return;
    protobuf_c_message_free_unpacked(&h->current->base, NULL);
    if (h->retired)
        protobuf_c_message_free_unpacked(&h->retired->base, NULL);
    pthread_rwlock_destroy(&h->lock);
    free(h);
}

void config_get(ConfigHolder *h, Norn__V1__Config *out)
{
    pthread_rwlock_rdlock(&h->lock);
    *out = *h->current;
    pthread_rwlock_unlock(&h->lock);
}

void config_set(ConfigHolder *h, const Norn__V1__Config *c)
{
    Norn__V1__Config *copy = (Norn__V1__Config *)msg_clone(&c->base);
    pthread_rwlock_wrlock(&h->lock);
    if (h->retired)
        protobuf_c_message_free_unpacked(&h->retired->base, NULL);
    h->retired = h->current;
    h->current = copy;
    pthread_rwlock_unlock(&h->lock);
}
