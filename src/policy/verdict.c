/* Per-class thresholds to unit and request verdicts (include/wafer/policy.h). */
#include "wafer/policy.h"

bool wf_verdict_unit(const float *probs, const float *thresholds, int num_labels, wf_unit_verdict_t *out)
{
    *out = (wf_unit_verdict_t){ .attack = false, .cls = 0, .score = 0, .margin = 0 };
    bool have = false;
    for (int c = 1; c < num_labels; c++) {
        float p = probs[c];
        if (p != p) /* NaN */
            continue;
        float m = p - thresholds[c];
        bool crosses = p >= thresholds[c];
        /* a crossing class beats any non-crossing one; among equals, the larger margin, then the lower id */
        if (!have || (crosses && !out->attack) || (crosses == out->attack && m > out->margin)) {
            out->attack = crosses;
            out->cls = c;
            out->score = p;
            out->margin = m;
            have = true;
        }
    }
    return out->attack;
}

void wf_verdict_init(wf_verdict_t *v)
{
    *v = (wf_verdict_t){ .attack = false, .cls = 0, .score = 1.0f, .margin = 0, .unit = -1 };
}

bool wf_verdict_add(wf_verdict_t *v, long unit, const float *probs, const float *thresholds, int num_labels,
                    wf_unit_verdict_t *uv)
{
    wf_unit_verdict_t u;
    wf_verdict_unit(probs, thresholds, num_labels, &u);
    v->units++;
    if (u.attack) {
        v->crossing++;
        if (!v->attack || u.margin > v->margin) {
            v->attack = true;
            v->cls = u.cls;
            v->score = u.score;
            v->margin = u.margin;
            v->unit = unit;
        }
    } else if (!v->attack && probs[0] == probs[0] && probs[0] < v->score) {
        v->score = probs[0];
    }
    if (uv)
        *uv = u;
    return u.attack;
}
