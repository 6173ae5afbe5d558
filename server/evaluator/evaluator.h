/*
 * evaluator.h — the AI judge: batched Amazon Bedrock Converse calls on its
 * own thread, off the request path.
 *
 * RPC handlers only enqueue (a step to judge, a session to evaluate, a
 * one-shot call for swarm analysis or task generation); they never wait for
 * the network. The evaluator thread drives a libcurl multi handle (HTTP/2
 * where TLS offers it, connection reuse, at most `max_in_flight` requests),
 * packs a session's pending steps into one Converse call (up to
 * `batch_size` steps, or whatever is pending after `batch_wait_ms`), answers
 * repeated steps from a bounded cache, retries throttling, 5xx and timeouts
 * with exponential backoff and jitter (honouring Retry-After), and opens a
 * circuit breaker after repeated failures (judging pauses, nothing else
 * does; it closes again on its own after a successful probe).
 *
 * The evaluator knows neither gRPC nor storage: it loads what a prompt needs
 * and applies results through the hooks the session service gives it, on
 * the evaluator thread. Prompts and parsing are the pure eval_prompt module.
 */
#ifndef NORN_EVALUATOR_H
#define NORN_EVALUATOR_H

#include <stddef.h>
#include <stdint.h>

#include "eval_prompt.h"
#include "norn/v1/common.pb-c.h"

typedef struct Evaluator Evaluator;

/* Credentials, from the environment (evaluator_credentials_from_env). */
typedef struct EvalCredentials {
    char bearer[4096];        /* AWS_BEARER_TOKEN_BEDROCK: Authorization: Bearer */
    char access_key[256];     /* AWS_ACCESS_KEY_ID    } SigV4, service "bedrock", */
    char secret_key[256];     /* AWS_SECRET_ACCESS_KEY} signed by libcurl */
    char session_token[4096]; /* AWS_SESSION_TOKEN (optional) */
} EvalCredentials;

/* Reads the credentials; returns 1 when there are usable ones (a bearer
 * token, or an access key with its secret), 0 otherwise. */
int evaluator_credentials_from_env(EvalCredentials *c);

typedef struct EvaluatorOptions {
    /* Base URL ("http://127.0.0.1:8089"); empty = the regional endpoint
     * https://bedrock-runtime.<region>.amazonaws.com. */
    char endpoint[1024];
    char region[64];
    char model_id[256];
    unsigned batch_size;    /* steps per Converse call */
    unsigned batch_wait_ms; /* how long a pending step may wait for company */
    unsigned max_in_flight; /* concurrent HTTP requests */
    unsigned connect_timeout_ms;
    unsigned request_timeout_ms;  /* the whole request, per attempt */
    unsigned max_attempts;        /* per request, the first included */
    unsigned backoff_base_ms;     /* first retry delay; doubles, full jitter */
    unsigned backoff_max_ms;      /* cap on one delay (Retry-After included) */
    unsigned breaker_failures;    /* consecutive failed attempts that open it */
    unsigned breaker_cooldown_ms; /* how long it stays open before a probe */
    unsigned max_pending_steps;   /* queue bound; overflow drops the oldest */
    size_t cache_entries;         /* step judgements kept for reuse */
    size_t max_response_bytes;
} EvaluatorOptions;

void evaluator_options_default(EvaluatorOptions *o);

/* How the evaluator reaches the session store (all called on the
 * evaluator thread; `ud` is EvaluatorHooks.ud). */
typedef struct EvaluatorHooks {
    void *ud;
    /* Loads the task, the up-to-5 steps before numbers[0] (context) and
     * the steps `numbers` (in order; a step that no longer exists is left
     * out). 0, or -1 when the session is gone. The evaluator frees what it
     * gets with the protobuf free functions and free(). */
    int (*load_steps)(void *ud, const char *session_id, const uint32_t *numbers, size_t n,
                      Norn__V1__TaskDefinition **task, Norn__V1__Step ***context, size_t *n_context,
                      Norn__V1__Step ***steps, size_t *n_steps);
    /* Applies step judgements (ok or failed) to the stored steps. */
    void (*apply_steps)(void *ud, const char *session_id, const EvalStepResult *results, size_t n);
    /* Loads a completed session for the session evaluation, with the steps
     * of its last invocation and all its issues in its steps/issues arrays,
     * and the configured max_steps (for a task that gives none). -1: gone. */
    int (*load_session)(void *ud, const char *session_id, Norn__V1__Session **s,
                        uint32_t *default_max_steps);
    /* Applies the session evaluation (ok, or the §4.5 failure result). */
    void (*apply_session)(void *ud, const char *session_id, const EvalSessionResult *r);
} EvaluatorHooks;

/* Starts the evaluator thread. `creds` NULL or without usable credentials:
 * the evaluator still exists but is disabled (evaluator_disabled_reason
 * says why) and every enqueue is refused. NULL on allocation or curl
 * failure. */
Evaluator *evaluator_new(const EvaluatorOptions *o, const EvalCredentials *creds,
                         const EvaluatorHooks *hooks);
/* Stops the thread and ends every one-shot call ("the server is shutting
 * down") while their RPC calls still exist; afterwards every enqueue is
 * refused. Call before the RPC server is destroyed. */
void evaluator_stop(Evaluator *ev);
/* Stops (if not yet), abandons what is pending and frees everything. */
void evaluator_free(Evaluator *ev);

/* NULL when AI judging is on, else a sentence saying why it is off. */
const char *evaluator_disabled_reason(const Evaluator *ev);

/* Batch size and wait can change at run time (UpdateConfig). */
void evaluator_set_batching(Evaluator *ev, unsigned batch_size, unsigned batch_wait_ms);

/* Queues a finished step for judging. 0, or -1 when disabled. */
int evaluator_enqueue_step(Evaluator *ev, const char *session_id, uint32_t step_number);
/* Queues the session evaluation; it runs once every queued step of the
 * session has been judged. 0, or -1 when disabled. */
int evaluator_enqueue_session(Evaluator *ev, const char *session_id);

/* A one-shot Converse call (swarm analysis, test-task generation), with
 * the same retries and breaker. `done` runs once on the evaluator thread
 * with the model's text, or text NULL and an error message. 0, or -1 when
 * disabled or the queue is full (done is then not called). */
typedef void (*EvalCallDone)(void *arg, const char *text, const char *error);
int evaluator_call(Evaluator *ev, const char *system, const char *user, double temperature,
                   EvalCallDone done, void *arg);

typedef struct EvaluatorStats {
    uint64_t calls;        /* model calls answered (any kind) */
    uint64_t steps_judged; /* by the model or the cache */
    uint64_t sessions_judged;
    uint64_t batches;       /* step calls */
    uint64_t batched_steps; /* steps sent in those calls */
    uint64_t cache_hits;
    uint64_t retries;
    uint64_t errors;  /* requests that failed for good */
    uint64_t dropped; /* pending steps dropped on overflow */
    uint64_t input_tokens, output_tokens;
    uint64_t queue_depth;    /* steps and sessions waiting now */
    uint64_t breaker_opened; /* times the circuit breaker opened */
    int breaker_open;
} EvaluatorStats;

void evaluator_stats(Evaluator *ev, EvaluatorStats *out);

#endif
