"""Learned thresholds: the operator sets a target false-hit rate, the cache learns per-entry thresholds.

A single global similarity threshold gives no guarantee: the similarity at which two prompts stop having
the same answer differs from prompt to prompt (vCache, "Verified Semantic Prompt Caching", arXiv
2502.03771). Following that paper's idea, each cached entry learns online, from occasional verification
calls (the provider answers and the cache checks whether its stored answer would have been right), how
often its answer is wrong at a given similarity.

vCache fits a sigmoid per entry. Here the estimate assumes only that a more similar prompt is no more
likely to need another answer (monotone in similarity), which turned out to matter: on the labelled set,
near-misses sit at higher similarities than many paraphrases, and a logistic fit under that kind of data
(or under all-correct data, where its maximum-likelihood slope diverges) gave bounds too loose to ever
exploit. For a candidate at similarity s the evidence is every verification of the entry at similarity
<= s (under monotonicity those are at least as likely to be wrong), plus the pooled verifications of all
entries at a small weight, plus one pseudo-observation of each outcome. `err` is the one-sided 95% Wilson
upper bound of the wrong share in that evidence, and the cache explores (calls the provider and verifies)
with probability

    tau = max(0, 1 - delta / err)

so that a request is answered wrongly from the cache with probability at most (1 - tau) * err <= delta.
As verifications accumulate the bound tightens and the entry explores less: its effective threshold is the
lowest similarity whose bound is below delta. This module is pure: the semantic cache owns the entries,
the clock and the provider.
"""

from __future__ import annotations

import bisect
import math
import random
from dataclasses import dataclass, field

#: how many observations the pooled evidence of all entries counts as, at most, in one entry's estimate
_POOLED_WEIGHT = 10.0
#: one-sided 95% bound
_Z = 1.645
_BINS = 100
_LOW = 0.0


@dataclass(slots=True)
class EntryStats:
    """The verification outcomes seen for one cached entry, kept sorted by similarity."""

    similarities: list[float] = field(default_factory=list)
    #: wrong outcomes among the first i observations (by similarity), i = 0..n
    wrong_before: list[int] = field(default_factory=lambda: [0])

    def __len__(self) -> int:
        return len(self.similarities)

    @property
    def correct(self) -> list[bool]:
        return [self.wrong_before[i + 1] == self.wrong_before[i] for i in range(len(self.similarities))]

    def add(self, similarity: float, correct: bool) -> None:
        position = bisect.bisect_right(self.similarities, similarity)
        self.similarities.insert(position, similarity)
        step = 0 if correct else 1
        self.wrong_before.insert(position + 1, self.wrong_before[position] + step)
        for index in range(position + 2, len(self.wrong_before)):
            self.wrong_before[index] += step

    def at_or_below(self, similarity: float) -> tuple[int, int]:
        """(observations, wrong ones) at similarity <= `similarity`."""
        count = bisect.bisect_right(self.similarities, similarity)
        return count, self.wrong_before[count]


class LearnedPolicy:
    def __init__(self, target_error: float, rng: random.Random | None = None) -> None:
        if not 0 < target_error < 1:
            raise ValueError("target_false_hit_rate must be between 0 and 1")
        self.delta = target_error
        self.rng = rng or random.Random()
        #: pooled outcomes of every entry, binned by similarity: [bin] -> (observations, wrong)
        self._pooled_seen = [0] * _BINS
        self._pooled_wrong = [0] * _BINS

    def explore_probability(self, stats: EntryStats, similarity: float) -> float:
        err = self.error_bound(stats, similarity)
        if err <= self.delta:
            return 0.0
        return 1.0 - self.delta / err

    def should_explore(self, stats: EntryStats, similarity: float) -> bool:
        return self.rng.random() < self.explore_probability(stats, similarity)

    def observe(self, stats: EntryStats, similarity: float, correct: bool) -> None:
        stats.add(similarity, correct)
        slot = _slot(similarity)
        self._pooled_seen[slot] += 1
        self._pooled_wrong[slot] += not correct

    def error_bound(self, stats: EntryStats, similarity: float) -> float:
        """An upper confidence bound on the chance that this entry's answer is wrong at `similarity`."""
        seen, wrong = stats.at_or_below(similarity)
        slot = _slot(similarity) + 1
        pooled_seen, pooled_wrong = sum(self._pooled_seen[:slot]), sum(self._pooled_wrong[:slot])
        scale = min(1.0, _POOLED_WEIGHT / pooled_seen) if pooled_seen else 0.0
        n = seen + pooled_seen * scale + 2.0  # one pseudo-observation of each outcome
        wrong_share = (wrong + pooled_wrong * scale + 1.0) / n
        return _wilson_upper(wrong_share, n)


def _slot(similarity: float) -> int:
    return min(_BINS - 1, max(0, int((similarity - _LOW) / (1 - _LOW) * _BINS)))


def _wilson_upper(share: float, n: float) -> float:
    z2 = _Z * _Z
    centre = share + z2 / (2 * n)
    spread = _Z * math.sqrt(share * (1 - share) / n + z2 / (4 * n * n))
    return min(1.0, (centre + spread) / (1 + z2 / n))
