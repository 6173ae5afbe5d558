/*
 * judge.c — see judge.h.
 */
#include "judge.h"

#include <stdlib.h>
#include <string.h>

#include "msg.h"

struct Judge {
    Store *store;
};

Judge *judge_new(Store *store)
{
    Judge *j = msg_alloc(sizeof *j);
    j->store = store;
    return j;
}

void judge_free(Judge *j)
{
    free(j);
}

static void outcome_init(JudgeOutcome *o)
{
    memset(o, 0, sizeof *o);
    o->action = NORN__V1__ACTION__ACTION_CONTINUE;
}

void judge_outcome_clear(JudgeOutcome *o)
{
    for (size_t i = 0; i < o->n_issues; i++)
        norn__v1__issue__free_unpacked(o->issues[i], NULL);
    free(o->issues);
    outcome_init(o);
}

const char *judge_issue_type_name(Norn__V1__IssueType t)
{
    static const char *const names[] = {
        "UNKNOWN",          "INFINITE_LOOP",       "TASK_DRIFT",          "INEFFICIENCY",
        "INCOMPLETE",       "TOOL_MISUSE",         "ERROR_HANDLING",      "DATA_EXFILTRATION",
        "PROMPT_INJECTION", "UNAUTHORIZED_ACCESS", "SUSPICIOUS_BEHAVIOR", "CREDENTIAL_LEAK",
        "SECURITY_BYPASS",  "MISSING_CONFIG",      "EXECUTION_ERROR",     "TIMEOUT",
        "AGENT_TERMINATED",
    };
    return (unsigned)t < sizeof names / sizeof names[0] ? names[t] : "UNKNOWN";
}

void judge_open(Judge *j, Norn__V1__Session *s, const Norn__V1__Config *cfg, JudgeOutcome *out)
{
    (void)j;
    (void)s;
    (void)cfg;
    outcome_init(out);
}

void judge_before(Judge *j, Norn__V1__Session *s, Norn__V1__Step *st, const Norn__V1__Config *cfg,
                  JudgeOutcome *out)
{
    (void)j;
    (void)s;
    (void)st;
    (void)cfg;
    outcome_init(out);
}

void judge_after(Judge *j, Norn__V1__Session *s, Norn__V1__Step *st, const Norn__V1__Config *cfg,
                 JudgeOutcome *out)
{
    (void)j;
    (void)s;
    (void)cfg;
    outcome_init(out);
    st->status = st->result_status == NORN__V1__RESULT_STATUS__RESULT_STATUS_SUCCESS
                     ? NORN__V1__STEP_STATUS__STEP_STATUS_SUCCESS
                     : NORN__V1__STEP_STATUS__STEP_STATUS_FAILED;
}

void judge_complete(Judge *j, Norn__V1__Session *s, Norn__V1__SessionStatus requested,
                    const Norn__V1__Config *cfg, JudgeOutcome *out)
{
    (void)j;
    (void)cfg;
    outcome_init(out);
    s->status = requested                ? requested
                : s->terminated_by_guard ? NORN__V1__SESSION_STATUS__SESSION_STATUS_TERMINATED
                                         : NORN__V1__SESSION_STATUS__SESSION_STATUS_COMPLETED;
}
