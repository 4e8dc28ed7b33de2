"""Tournament self-rejection: best of N by single elimination, judged by the model.

N candidates per prompt are shuffled with the PRNG key and paired up; the odd one
out gets a bye and opens the next round (so no candidate gets two byes in a row
while others play). Each round's matches, across all prompts, are judged in one
batch. Single elimination always takes exactly N - 1 matches per prompt.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import jax
import numpy as np


@dataclasses.dataclass(frozen=True)
class Match:
    round: int
    prompt: int
    a: int        # candidate index shown as the first response
    b: int
    winner: int


@dataclasses.dataclass
class TournamentResult:
    winners: np.ndarray                 # [num_prompts] index of each prompt's winner
    rounds: list[list[Match]]           # the bracket, round by round

    def matches_per_prompt(self, num_prompts: int) -> np.ndarray:
        counts = np.zeros(num_prompts, int)
        for matches in self.rounds:
            for m in matches:
                counts[m.prompt] += 1
        return counts


# judge(matches) -> bool array, True where candidate `a` of (prompt, a, b) wins.
JudgeFn = Callable[[Sequence[tuple[int, int, int]]], np.ndarray]


def run_tournament(key: jax.Array, num_candidates: Sequence[int] | int, judge: JudgeFn,
                   num_prompts: int | None = None) -> TournamentResult:
    """Runs one bracket per prompt; `num_candidates` is N for every prompt or a list."""
    if isinstance(num_candidates, int):
        num_candidates = [num_candidates] * (num_prompts or 1)
    if any(n < 1 for n in num_candidates):
        raise ValueError("every prompt needs at least one candidate")
    alive = [list(np.asarray(jax.random.permutation(jax.random.fold_in(key, p), n)))
             for p, n in enumerate(num_candidates)]
    rounds: list[list[Match]] = []
    while any(len(c) > 1 for c in alive):
        games, byes = [], []
        for p, cands in enumerate(alive):
            for i in range(0, len(cands) - 1, 2):
                games.append((p, int(cands[i]), int(cands[i + 1])))
            byes.append([int(cands[-1])] if len(cands) % 2 else [])
        a_wins = np.asarray(judge(games), bool)
        if a_wins.shape != (len(games),):
            raise ValueError(f"judge returned shape {a_wins.shape} for {len(games)} matches")
        matches = [Match(len(rounds), p, a, b, a if w else b)
                   for (p, a, b), w in zip(games, a_wins)]
        rounds.append(matches)
        alive = [byes[p] + [m.winner for m in matches if m.prompt == p]
                 for p in range(len(alive))]
    return TournamentResult(np.asarray([c[0] for c in alive]), rounds)
