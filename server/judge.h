/*
 * judge.h — the bridge between the session service and the pure analyzer:
 * keeps each active session's analyzer state in a bounded cache, rebuilds
 * it from stored steps when it is missing (after a restart or eviction), and
 * turns analyzer results into norn.v1 issues, statuses and guard actions.
 * Nothing here talks to gRPC; reads go through the store.
 */
#ifndef NORN_JUDGE_H
#define NORN_JUDGE_H

#include "norn/v1/common.pb-c.h"
#include "norn/v1/config_service.pb-c.h"
#include "store.h"

typedef struct Judge Judge;

typedef struct JudgeOutcome {
    Norn__V1__Action action;     /* CONTINUE or TERMINATE */
    Norn__V1__StepStatus status; /* the verdict's step status (UNSPECIFIED: none) */
    char reason[512];            /* why TERMINATE */
    Norn__V1__Issue **issues;    /* malloc'd, owned; issue ids are set by the caller */
    size_t n_issues;
} JudgeOutcome;

Judge *judge_new(Store *store);
void judge_free(Judge *j);

/* A new invocation of session s (OpenSession): scans the system prompt. */
void judge_open(Judge *j, Norn__V1__Session *s, const Norn__V1__Config *cfg, JudgeOutcome *out);
/* Before the tool runs: input checks and loop detection. May set st->status. */
void judge_before(Judge *j, Norn__V1__Session *s, Norn__V1__Step *st, const Norn__V1__Config *cfg,
                  JudgeOutcome *out);
/* After the tool ran: output scan; sets st->status to its final value. */
void judge_after(Judge *j, Norn__V1__Session *s, Norn__V1__Step *st, const Norn__V1__Config *cfg,
                 JudgeOutcome *out);
/* End of the invocation: efficiency, overrides, flags, quality and status
 * (`requested` is the client's status, or UNSPECIFIED). Forgets the state. */
void judge_complete(Judge *j, Norn__V1__Session *s, Norn__V1__SessionStatus requested,
                    const Norn__V1__Config *cfg, JudgeOutcome *out);

/* After the AI's session evaluation was copied into s (quality, scores):
 * §3.9's overrides again, starting from the AI's verdict, so the rules
 * always beat the model. `issues` are all the session's issues in order;
 * those of the last invocation (from s->invocation_first_issue) are
 * weighed. Sets quality, scores, flags and security_threats_detected. */
void judge_reapply(Judge *j, Norn__V1__Session *s, Norn__V1__Issue *const *issues, size_t n,
                   const Norn__V1__Config *cfg);

void judge_outcome_clear(JudgeOutcome *o);
/* "INFINITE_LOOP" etc., as the original wrote issue types. */
const char *judge_issue_type_name(Norn__V1__IssueType t);

#endif
