"""Per-class thresholds for a target false-positive rate, chosen jointly on the
validation split (used by train.py on the GPU machine and evaluate.py here;
Python 3 stdlib only).

Every attack class's threshold is set from the validation data; none is a
default. The candidate thresholds are a fixed grid, 1.0 and then the logistic
of 16, 15.75, ..., -6 (0.9999999 down to 0.0025). Every class starts at 1.0
(nothing flagged). A greedy search then lowers, one move at a time, the
threshold of the class where a move of j grid steps (j <= lookahead, so that a
step that buys nothing at once but opens a gain is found) buys the most
validation attack requests newly detected per (benign validation requests
newly flagged + j/2), under two rules:

- the benign validation requests flagged stay within `max_fp` (the target
  rate times their number);
- a move must detect at least `min_gain` (a share of the validation attack
  requests) per grid step: a threshold is lowered only while that pays, so it
  stops at the knee of the class's attack scores instead of running down to
  just above the largest benign score (which on new data, whose benign scores
  differ, lets many through: the first version of this rule, choosing the
  benign score order statistics, flagged 0.2-0.3% of the benign test requests
  at 0.05% on validation).

The FPR budget thus goes to the classes where it detects the most, instead of
an equal share per class with a floor of 0.5 (the earlier rule, which left
cmdi and other_injection at that floor, uncalibrated, where no benign unit
reached it).
"""
import math

GRID = [1.0] + [1.0 / (1.0 + math.exp(-x / 4.0)) for x in range(64, -25, -1)]


def greedy(classes, units, req_label, max_fp, min_gain_share=0.0005, lookahead=len(GRID)):
    """classes: label names, [0] = benign. units: (req_id, probs list). req_label:
    req_id -> label ('benign', an attack class, or something else: ignored).
    Returns ({class: threshold}, info)."""
    att = classes[1:]
    bmax, amax = {}, {}  # request -> per-class max score over its units
    for rid, p in units:
        lab = req_label.get(rid)
        d = bmax if lab == "benign" else amax if lab in att else None
        if d is None:
            continue
        m = d.setdefault(rid, [0.0] * len(att))
        for i in range(len(att)):
            if p[i + 1] > m[i]:
                m[i] = p[i + 1]
    # per class, requests by score, descending; pos[c] = how many are at or over the class's threshold
    bl = [sorted(((m[i], r) for r, m in bmax.items()), reverse=True) for i in range(len(att))]
    al = [sorted(((m[i], r) for r, m in amax.items()), reverse=True) for i in range(len(att))]
    k = [0] * len(att)
    bpos = [sum(1 for s, _ in bl[i] if s >= GRID[0]) for i in range(len(att))]
    apos = [sum(1 for s, _ in al[i] if s >= GRID[0]) for i in range(len(att))]
    flagged = {r for i in range(len(att)) for _, r in bl[i][:bpos[i]]}
    detected = {r for i in range(len(att)) for _, r in al[i][:apos[i]]}
    min_gain = max(1.0, min_gain_share * len(amax))
    moves = []
    while True:
        best = None
        for i in range(len(att)):
            newfp, gain = set(), set()
            bp, ap = bpos[i], apos[i]
            for j in range(1, lookahead + 1):
                kk = k[i] + j
                if kk >= len(GRID):
                    break
                t = GRID[kk]
                while bp < len(bl[i]) and bl[i][bp][0] >= t:
                    if bl[i][bp][1] not in flagged:
                        newfp.add(bl[i][bp][1])
                    bp += 1
                while ap < len(al[i]) and al[i][ap][0] >= t:
                    if al[i][ap][1] not in detected:
                        gain.add(al[i][ap][1])
                    ap += 1
                if len(flagged) + len(newfp) > max_fp:
                    break
                if len(gain) < min_gain * j:
                    continue
                score = len(gain) / (len(newfp) + 0.5 * j)
                if best is None or score > best[0]:
                    best = (score, i, kk, bp, ap, set(newfp), set(gain))
        if best is None:
            break
        _, i, kk, bp, ap, newfp, gain = best
        k[i], bpos[i], apos[i] = kk, bp, ap
        flagged |= newfp
        detected |= gain
        moves.append((att[i], round(GRID[kk], 7), len(gain), len(newfp)))
    out = {classes[0]: 0.5}
    for i, c in enumerate(att):
        out[c] = round(GRID[k[i]], 7)
    info = {"valid_benign_flagged": len(flagged), "max_fp": max_fp, "valid_attacks_detected": len(detected),
            "valid_attacks": len(amax), "min_gain": min_gain, "moves": moves}
    return out, info
