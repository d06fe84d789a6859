"""Grounding language plans in demonstrations (GLiDE, Wang et al., ICLR 2024).

A language plan gives a sequence of ``K`` modes (here as data: mode ``0 -> 1 -> ... -> K-1``,
no LLM call). Which states belong to which mode is unknown. GLiDE learns a mode classifier
``p(m | s)`` from a few successful demonstrations plus *counterfactual perturbations*: the
demonstrations are replayed with a random displacement injected, and each replay is labelled
only by task success. The explanation: a trajectory succeeds iff its mode sequence starts in
the first mode, ends in the last and makes only transitions the plan allows (``F[i, j] = 1`` for
``j ∈ {i, i + 1}``); a perturbation that pushes the system across a mode boundary in a way the
plan forbids makes it fail.

* :func:`plan_transitions`: the plan's feasibility matrix ``F``.
* :func:`feasibility_log_prob`: ``log P(mode sequence feasible, starts in 0, ends in K-1)``
  under per-step mode probabilities ``p_t``, by the forward recursion
  ``α_{t+1} = (α_t F) ⊙ p_{t+1}`` (for two steps this is ``p_1ᵀ F p_2``; the recursion sums
  over every mode sequence, exactly).
* :func:`grounding_loss`: ``-log P`` for successes, ``-log(1 - P)`` for failures.
* :class:`ModeWorld`: a 2D navigation environment with four hidden, curved mode regions (a
  U-shaped plan: up, across, down), scripted demonstrations and replayed perturbations.
* :class:`ModeClassifier` and :func:`fit_modes` (several random restarts, the lowest loss kept).
* :class:`ModePolicy`: a reactive policy from the grounded modes (in mode ``m`` head for where
  the demonstrations enter mode ``m + 1``), and :class:`NearestNeighbourBC` as the baseline.

Shapes: states ``(N, 2)``; trajectory batches ``(B, T, 2)`` with a mask ``(B, T)``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from torchloom.core.checks import check_floating, check_ndim

__all__ = [
    "ModeClassifier",
    "ModePolicy",
    "ModeWorld",
    "NearestNeighbourBC",
    "Trajectories",
    "feasibility_log_prob",
    "fit_modes",
    "grounding_loss",
    "plan_transitions",
    "rollout",
]


def plan_transitions(plan: Sequence[int], num_modes: int | None = None) -> Tensor:
    """Feasibility matrix ``(K, K)`` of a plan given as the ordered list of mode ids.

    Staying in a mode and moving to the plan's next mode are feasible, nothing else.

    Args:
        plan: the modes in the order the plan visits them (each id once).
        num_modes: ``K`` (defaults to ``len(plan)``); every id must be in ``[0, K)``.

    Returns:
        ``F`` with ``F[i, i] = 1`` and ``F[plan[k], plan[k + 1]] = 1``.
    """
    k = len(plan) if num_modes is None else num_modes
    if len(plan) < 1:
        raise ValueError("plan must name at least one mode")
    if len(set(plan)) != len(plan):
        raise ValueError(f"plan must visit each mode once, got {list(plan)}")
    for m in plan:
        if isinstance(m, bool) or not isinstance(m, int) or not 0 <= m < k:
            raise ValueError(f"plan contains unknown mode {m!r}; modes are 0..{k - 1}")
    out = torch.eye(k)
    for a, b in itertools.pairwise(plan):
        out[a, b] = 1.0
    return out


def feasibility_log_prob(
    log_p: Tensor, feasible: Tensor, mask: Tensor | None = None, *, start: int, end: int | None
) -> Tensor:
    """``log P(feasible mode sequence)`` for each trajectory, by the forward recursion.

    With independent per-step mode distributions ``p_t``, the probability that the sampled
    sequence ``m_1..m_T`` starts in ``start``, makes only transitions with ``F = 1`` and (if
    ``end`` is given) ends in ``end`` is ``Σ α_T`` with ``α_1 = p_1 ⊙ e_start`` and
    ``α_{t+1} = (α_t F) ⊙ p_{t+1}`` — computed here in log space.

    Args:
        log_p: log mode probabilities ``(B, T, K)``.
        feasible: ``F`` ``(K, K)`` with entries in ``{0, 1}``.
        mask: ``(B, T)`` booleans, True for real steps (a prefix of each row); padding keeps
            ``α`` unchanged.
        start: the required first mode.
        end: the required last mode, or None for any.

    Returns:
        ``(B,)`` log probabilities (``≤ 0``).
    """
    check_floating(log_p, "log_p")
    check_ndim(log_p, "log_p", 3, "(B, T, K)")
    b, t_len, k = log_p.shape
    if feasible.shape != (k, k):
        raise ValueError(f"feasible must be ({k}, {k}), got {tuple(feasible.shape)}")
    if mask is None:
        mask = torch.ones(b, t_len, dtype=torch.bool, device=log_p.device)
    elif mask.shape != (b, t_len):
        raise ValueError(f"mask must be ({b}, {t_len}), got {tuple(mask.shape)}")
    # scaled forward recursion in probability space: α_t = c_t · α̃_t with Σ α̃_t = 1
    f = (feasible.to(device=log_p.device, dtype=log_p.dtype) > 0).to(log_p.dtype)
    p = log_p.exp()
    log_c = log_p[:, 0, start]
    tiny = torch.finfo(log_p.dtype).tiny
    alpha = F.one_hot(torch.full((b,), start, device=log_p.device), k).to(log_p.dtype)
    for t in range(1, t_len):
        nxt = (alpha @ f) * p[:, t]
        norm = nxt.sum(-1, keepdim=True).clamp_min(tiny)
        live = mask[:, t]
        alpha = torch.where(live[:, None], nxt / norm, alpha)
        log_c = log_c + torch.where(live, norm.squeeze(-1).log(), torch.zeros_like(log_c))
    if end is None:
        return log_c
    return log_c + alpha[:, end].clamp_min(tiny).log()


def _plan_order(feasible: Tensor, start: int) -> list[int]:
    """The plan's mode order read off ``F`` (follow the off-diagonal ones from ``start``)."""
    order = [start]
    k = feasible.shape[0]
    while len(order) < k:
        nxt = [j for j in range(k) if j != order[-1] and feasible[order[-1], j] > 0]
        if len(nxt) != 1 or nxt[0] in order:
            break
        order.append(nxt[0])
    return order


def _log1mexp(x: Tensor) -> Tensor:
    """``log(1 - exp(x))`` for ``x ≤ 0``, stable at both ends."""
    x = x.clamp(max=-1e-7)
    return torch.where(x > -math.log(2), torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


def grounding_loss(
    logits: Tensor,
    mask: Tensor,
    success: Tensor,
    feasible: Tensor,
    start: int,
    end: int,
) -> Tensor:
    """GLiDE's explanation loss over a batch of labelled trajectories.

    ``P`` = probability that the classified mode sequence is a feasible execution of the plan
    (starts in ``start``, allowed transitions only, ends in ``end``); successes contribute
    ``-log P`` and failures ``-log(1 - P)`` (some transition or the outcome violates the plan).

    Args:
        logits: classifier outputs ``(B, T, K)``.
        mask: ``(B, T)`` real steps.
        success: ``(B,)`` booleans.
        feasible: ``(K, K)``.
        start, end: first and last mode of the plan.

    Returns:
        Scalar mean loss.
    """
    log_p = F.log_softmax(logits, dim=-1)
    lp = feasibility_log_prob(log_p, feasible, mask, start=start, end=end)
    per = torch.where(success.to(torch.bool), -lp, -_log1mexp(lp))
    return per.mean()


@dataclass(frozen=True)
class Trajectories:
    """A padded batch of trajectories.

    Attributes:
        states: ``(B, T, 2)``.
        mask: ``(B, T)`` True on real steps.
        success: ``(B,)`` task outcome.
    """

    states: Tensor
    mask: Tensor
    success: Tensor

    def __len__(self) -> int:
        return int(self.states.shape[0])

    @staticmethod
    def cat(batches: Sequence[Trajectories]) -> Trajectories:
        """Concatenate batches, padding every one to the longest ``T`` (last state repeated)."""
        t_max = max(int(b.states.shape[1]) for b in batches)
        states, masks = [], []
        for b in batches:
            extra = t_max - b.states.shape[1]
            states.append(torch.cat([b.states, b.states[:, -1:].expand(-1, extra, -1)], dim=1))
            masks.append(torch.cat([b.mask, b.mask.new_zeros(len(b), extra)], dim=1))
        return Trajectories(
            torch.cat(states), torch.cat(masks), torch.cat([b.success for b in batches])
        )


def _pad(trajs: Sequence[Tensor], success: Sequence[bool]) -> Trajectories:
    t_max = max(int(t.shape[0]) for t in trajs)
    states = torch.zeros(len(trajs), t_max, 2)
    mask = torch.zeros(len(trajs), t_max, dtype=torch.bool)
    for i, t in enumerate(trajs):
        states[i, : t.shape[0]] = t
        states[i, t.shape[0] :] = t[-1]
        mask[i, : t.shape[0]] = True
    return Trajectories(states, mask, torch.tensor(list(success), dtype=torch.bool))


class ModeWorld:
    """2D navigation with four hidden mode regions and the plan ``0 -> 1 -> 2 -> 3``.

    The unit square is cut by two curved boundaries, ``x = 0.5 + a sin(2π f y + φ)`` and
    ``y = 0.5 + b sin(2π g x + ψ)``: mode 0 bottom-left (start), 1 top-left, 2 top-right,
    3 bottom-right (goal). Demonstrations go up, across and down; a run succeeds iff its true
    mode sequence is a feasible execution of the plan (so crossing the bottom boundary directly
    from 0 to 3, or being pushed back into an earlier mode, fails).

    Args:
        seed: draws the boundaries' amplitudes, frequencies and phases.
        step: distance moved per time step.
    """

    num_modes = 4
    plan = (0, 1, 2, 3)

    def __init__(self, seed: int = 0, step: float = 0.03) -> None:
        g = torch.Generator().manual_seed(seed)
        r = torch.rand(6, generator=g)
        self.a, self.b = 0.05 + 0.07 * float(r[0]), 0.05 + 0.07 * float(r[1])
        self.f, self.gq = 0.7 + 0.8 * float(r[2]), 0.7 + 0.8 * float(r[3])
        self.phi, self.psi = 2 * math.pi * float(r[4]), 2 * math.pi * float(r[5])
        self.step = step
        self.feasible = plan_transitions(self.plan)

    def modes(self, states: Tensor) -> Tensor:
        """True mode of each state ``(..., 2) -> (...)`` (long)."""
        x, y = states[..., 0], states[..., 1]
        right = x > 0.5 + self.a * torch.sin(2 * math.pi * self.f * y + self.phi)
        top = y > 0.5 + self.b * torch.sin(2 * math.pi * self.gq * x + self.psi)
        return torch.where(right, torch.where(top, 2, 3), torch.where(top, 1, 0))

    def succeeds(self, traj: Tensor) -> bool:
        """Whether a trajectory ``(T, 2)`` executes the plan (feasible true mode sequence)."""
        m = self.modes(traj)
        if int(m[0]) != self.plan[0] or int(m[-1]) != self.plan[-1]:
            return False
        return bool(self.feasible[m[:-1], m[1:]].all())

    def _segment(self, a: Tensor, b: Tensor) -> Tensor:
        n = max(math.ceil(float((b - a).norm()) / self.step), 1)
        w = torch.linspace(0, 1, n + 1)[1:, None]
        return a + w * (b - a)

    def demonstrations(self, n: int, generator: torch.Generator) -> list[Tensor]:
        """``n`` successful scripted demonstrations ``(T_i, 2)``: start -> up -> across ->
        down -> goal through jittered waypoints (resampled until they succeed)."""
        out: list[Tensor] = []
        while len(out) < n:
            j = (torch.rand(5, 2, generator=generator) - 0.5) * 0.16
            pts = torch.tensor([[0.2, 0.15], [0.22, 0.5], [0.3, 0.82], [0.7, 0.82], [0.8, 0.2]])
            pts = (pts + j).clamp(0.03, 0.97)
            traj = torch.cat([pts[:1]] + [self._segment(a, b) for a, b in itertools.pairwise(pts)])
            if self.succeeds(traj):
                out.append(traj)
        return out

    def perturb(
        self, demos: Sequence[Tensor], n: int, generator: torch.Generator, sigma: float = 0.12
    ) -> Trajectories:
        """Counterfactual replays: a demonstration is replayed, at a random step the state is
        displaced by ``N(0, σ² I)`` (clipped to the square), the replay walks back to the next
        demonstration state and continues. Each replay is labelled by :meth:`succeeds` only.
        """
        trajs: list[Tensor] = []
        labels: list[bool] = []
        for _ in range(n):
            d = demos[int(torch.randint(0, len(demos), (1,), generator=generator))]
            t = int(torch.randint(0, d.shape[0] - 1, (1,), generator=generator))
            push = d[t] + sigma * torch.randn(2, generator=generator)
            push = push.clamp(0.0, 1.0)
            traj = torch.cat([d[: t + 1], push[None], self._segment(push, d[t + 1]), d[t + 2 :]])
            trajs.append(traj)
            labels.append(self.succeeds(traj))
        return _pad(trajs, labels)

    def as_batch(self, demos: Sequence[Tensor]) -> Trajectories:
        """Successful demonstrations as a padded :class:`Trajectories` batch."""
        return _pad(list(demos), [True] * len(demos))


class ModeClassifier(nn.Module):
    """``p(m | s)``: random Fourier features of the 2D state, then a two-layer MLP.

    Args:
        num_modes: ``K``.
        hidden: hidden width.
        features: number of Fourier frequencies (fixed, drawn with ``generator``).
        scale: frequency scale of the features.
        generator: draws the fixed frequencies.

    Shapes: ``(..., 2) -> (..., K)`` logits.
    """

    freqs: Tensor

    def __init__(
        self,
        num_modes: int,
        hidden: int = 64,
        features: int = 32,
        scale: float = 3.0,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        g = generator if generator is not None else torch.Generator().manual_seed(0)
        self.register_buffer("freqs", torch.randn(2, features, generator=g) * scale)
        self.net = nn.Sequential(
            nn.Linear(2 + 2 * features, hidden),
            nn.Tanh(),
            nn.Linear(hidden, hidden),
            nn.Tanh(),
            nn.Linear(hidden, num_modes),
        )

    def forward(self, s: Tensor) -> Tensor:
        if s.shape[-1] != 2:
            raise ValueError(f"s must have a last dimension of 2, got {tuple(s.shape)}")
        z = 2 * math.pi * s @ self.freqs
        return self.net(torch.cat([s, torch.sin(z), torch.cos(z)], dim=-1))


def fit_modes(
    data: Trajectories,
    feasible: Tensor,
    start: int,
    end: int,
    steps: int = 400,
    restarts: int = 3,
    lr: float = 1e-2,
    scale: float = 1.0,
    warmup: int = 100,
    generator: torch.Generator | None = None,
) -> tuple[ModeClassifier, float]:
    """Train mode classifiers with :func:`grounding_loss` from several random initialisations
    (GLiDE's parallel guesses) and keep the one with the lowest final loss.

    Args:
        data: labelled trajectories (successes and failures).
        feasible: the plan's ``F`` ``(K, K)``.
        start, end: first and last mode.
        steps: full-batch Adam steps per restart.
        restarts: number of initialisations.
        lr: Adam learning rate.
        scale: frequency scale of the classifier's Fourier features (smoothness prior).
        warmup: steps of an uninformed start: the successful trajectories cut into ``K``
            equal-time segments in plan order (a guess, not labels) before the loss takes over.
        generator: randomness of the initialisations.

    Returns:
        The best classifier and its loss.
    """
    if restarts < 1 or steps < 1:
        raise ValueError(f"steps and restarts must be >= 1, got {steps}, {restarts}")
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    best: tuple[ModeClassifier, float] | None = None
    k = feasible.shape[0]
    plan = _plan_order(feasible, start)
    ok = data.mask[data.success]
    lengths = ok.sum(1, keepdim=True)
    frac = torch.arange(ok.shape[1])[None] / lengths.clamp_min(1)
    seg = (frac * k).floor().long().clamp(max=k - 1)
    guess_states = data.states[data.success][ok]
    guess_modes = torch.tensor(plan)[seg[ok]]
    for _ in range(restarts):
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=g)))
        model = ModeClassifier(k, scale=scale, generator=g)
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        for _ in range(warmup):
            loss = F.cross_entropy(model(guess_states), guess_modes)
            opt.zero_grad()
            loss.backward()
            opt.step()
        for _ in range(steps):
            loss = grounding_loss(model(data.states), data.mask, data.success, feasible, start, end)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"grounding loss became {loss.item()}")
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            final = float(
                grounding_loss(model(data.states), data.mask, data.success, feasible, start, end)
            )
        if best is None or final < best[1]:
            best = (model, final)
    assert best is not None
    return best


class NearestNeighbourBC:
    """Behaviour cloning baseline: the action of the nearest demonstration state.

    Args:
        demos: demonstrations ``(T_i, 2)``; the action at ``s_t`` is ``s_{t+1} - s_t``.
    """

    def __init__(self, demos: Sequence[Tensor]) -> None:
        self.states = torch.cat([d[:-1] for d in demos])
        self.actions = torch.cat([d[1:] - d[:-1] for d in demos])
        self.goal = torch.stack([d[-1] for d in demos]).mean(0)

    def __call__(self, s: Tensor) -> Tensor:
        """Action ``(2,)`` at state ``(2,)``."""
        i = int(((self.states - s) ** 2).sum(-1).argmin())
        return self.actions[i]


class ModePolicy:
    """Reactive policy from grounded modes: in predicted mode ``m`` move toward where the
    demonstrations enter mode ``m + 1`` (the mean of their first states classified ``m + 1``);
    in the last mode move toward the goal.

    Args:
        classifier: a trained :class:`ModeClassifier`.
        demos: demonstrations ``(T_i, 2)``.
        plan: the mode order.
        step: distance per step.
    """

    def __init__(
        self, classifier: ModeClassifier, demos: Sequence[Tensor], plan: Sequence[int], step: float
    ) -> None:
        self.classifier = classifier
        self.plan = list(plan)
        self.step = step
        targets: list[Tensor] = []
        with torch.no_grad():
            labels = [classifier(d).argmax(-1) for d in demos]
        for k in range(1, len(self.plan)):
            entries = [
                d[int((lab == self.plan[k]).nonzero()[0])]
                for d, lab in zip(demos, labels)
                if bool((lab == self.plan[k]).any())
            ]
            if not entries:
                raise ValueError(f"no demonstration state is classified as mode {self.plan[k]}")
            # aim slightly past the entry, inside the next mode
            targets.append(torch.stack(entries).mean(0))
        targets.append(torch.stack([d[-1] for d in demos]).mean(0))
        self.targets = torch.stack(targets)

    def __call__(self, s: Tensor) -> Tensor:
        """Action ``(2,)`` at state ``(2,)``."""
        with torch.no_grad():
            m = int(self.classifier(s).argmax())
        k = self.plan.index(m)
        d = self.targets[k] - s
        n = float(d.norm())
        return d if n <= self.step else d / n * self.step


def rollout(
    policy: Callable[[Tensor], Tensor],
    start: Tensor,
    goal: Tensor,
    push_at: int,
    push: Tensor,
    max_steps: int = 200,
    tolerance: float = 0.05,
) -> Tensor:
    """Run ``policy`` from ``start``; at step ``push_at`` the state is displaced by ``push``
    (an external perturbation, clipped to the unit square). Stops within ``tolerance`` of
    ``goal`` or after ``max_steps``.

    Args:
        policy: state ``(2,)`` -> action ``(2,)`` (the displacement of one step).
        start, goal: ``(2,)``.
        push_at: step of the perturbation.
        push: ``(2,)`` displacement.
        max_steps: step budget.
        tolerance: goal radius.

    Returns:
        The visited states ``(T, 2)``, the pushed state included.
    """
    s = start.clone()
    out = [s]
    for t in range(max_steps):
        if t == push_at:
            s = (s + push).clamp(0.0, 1.0)
            out.append(s)
        if float((s - goal).norm()) <= tolerance:
            break
        s = (s + policy(s)).clamp(0.0, 1.0)
        out.append(s)
    return torch.stack(out)
