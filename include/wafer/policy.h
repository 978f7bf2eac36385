/*
 * wafer policy: from the model's per-unit class probabilities to a verdict.
 *
 * A unit crosses when, for some attack class c (every label but labels[0],
 * the benign class), probs[c] >= thresholds[c] (wafer.json "thresholds").
 * Its margin is probs[c] - thresholds[c]; the unit's class is the crossing
 * class with the largest margin. A request is an attack when any of its units
 * crosses; the request's class and score are those of the unit with the
 * largest margin (the deciding unit; the first one on a tie).
 *
 * A benign request is reported with the benign class and, as its score, the
 * lowest benign probability among its classified units (1 when none was
 * classified): the score is always the model's probability of the class
 * named.
 */
#ifndef WAFER_POLICY_H
#define WAFER_POLICY_H

#include <stdbool.h>
#include <stddef.h>

typedef struct {
    bool attack; /* some attack class reached its threshold */
    int cls;     /* attack: the crossing class with the largest margin; else the attack class with the
                    largest (negative) margin, or 0 when the model has no attack class */
    float score; /* probs[cls] */
    float margin;/* probs[cls] - thresholds[cls] */
} wf_unit_verdict_t;

/* Decides one unit from its num_labels probabilities. A NaN probability
 * never crosses. Returns out->attack. */
bool wf_verdict_unit(const float *probs, const float *thresholds, int num_labels, wf_unit_verdict_t *out);

typedef struct {
    bool attack;
    int cls;          /* deciding unit's class; 0 (benign) when not an attack */
    float score;      /* attack: the deciding unit's probability of cls; benign: min benign probability */
    float margin;     /* the deciding unit's margin (attack) */
    long unit;        /* index (as passed to wf_verdict_add) of the deciding unit; -1 when none */
    size_t units;     /* units added */
    size_t crossing;  /* units that crossed */
} wf_verdict_t;

void wf_verdict_init(wf_verdict_t *v);
/* Adds one classified unit (its index, for reporting) and returns whether
 * it crossed; *uv (may be NULL) receives the unit's own verdict. */
bool wf_verdict_add(wf_verdict_t *v, long unit, const float *probs, const float *thresholds, int num_labels,
                    wf_unit_verdict_t *uv);

#endif
