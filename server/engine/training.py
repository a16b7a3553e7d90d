"""Sliced training (the hybrid paper's Algorithm 1 as docs/unlearning.md sections 2-3 define it) and its cost model.

Everything random is derived, never drawn in sequence: the shard of a sample is a keyed hash of its id, the
slice order of a shard, its initial parameters and the batch plan of every (shard, step, epoch) each come
from a seed hashed out of the training seed and those numbers. So any step can be re-run on its own and a
retrain from checkpoint i-1 reproduces exactly what training from scratch would do without the forgotten
samples: the same permutations, the same batches minus those samples ("shrink, don't re-pack"), the same
deterministic kernels.

Numbering: steps s = 1..S (step s trains on slices 1..s for E_s epochs); optimizer steps t are numbered per
shard from 0 in training order over all steps, epochs and batches, counting every planned batch even when
forgetting has emptied it (an empty batch is skipped, so its increment is zero).

E_s comes from the epoch schedule (schedule.py, re-exported here with the cost model): "per-step" gives every
step E epochs, so a full training reads about E * n * (S+1) / 2 samples and grows with S; "sisa" spreads E
as the SISA reference code does, so a full training reads about E * n whatever S.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from forgetd.server.engine.increments_codec import IncrementRows, row_writer
from forgetd.server.engine.model import MLPShape, forward
from forgetd.server.engine.quantised import is_int8_rows, quantise
from forgetd.server.engine.schedule import (
    Epochs,
    config_epochs,
    cost,
    default_budget,
    epochs_per_step,
    step_epochs,
    threshold,
)

__all__ = [
    "TRAIN_THREADS",
    "Epochs",
    "epochs_per_step",
    "config_epochs",
    "derive_seed",
    "assign_shards",
    "ShardLayout",
    "make_layout",
    "cost",
    "threshold",
    "default_budget",
    "epoch_order",
    "build_index",
    "OptState",
    "run_steps",
    "deterministic",
    "cuda_determinism",
]

# Fixed, so CPU results never depend on the machine's core count (BLAS reductions split by thread).
TRAIN_THREADS = 1


def derive_seed(seed: int, *labels: object) -> int:
    """A 63-bit seed for one purpose, e.g. derive_seed(seed, "batches", shard, step, epoch)."""
    text = ":".join(["forgetd.seed.v1", str(seed), *map(str, labels)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1


def assign_shards(ids: Sequence[str], shards: int, seed: int) -> np.ndarray:
    """Shard of each id: HMAC-SHA256 keyed by the seed, mod K. Stable across processes and machines."""
    key = hashlib.sha256(f"forgetd.shard-key.v1:{seed}".encode()).digest()
    out = np.empty(len(ids), dtype=np.int64)
    for i, sid in enumerate(ids):
        h = hmac.digest(key, sid.encode("utf-8"), "sha256")
        out[i] = int.from_bytes(h[:8], "big") % shards
    return out


@dataclass(frozen=True)
class ShardLayout:
    """One shard's members in slice order. Slice j (1-based) is members[bounds[j-1]:bounds[j]], so the data
    of step s (slices 1..s) is the prefix members[:bounds[s]]: cumulative training is a growing prefix."""

    members: np.ndarray  # (n_k,) int64 row positions in the training split
    bounds: np.ndarray  # (S+1,) int64, bounds[0] = 0, bounds[S] = n_k

    @property
    def slices(self) -> int:
        return len(self.bounds) - 1

    def step_size(self, s: int) -> int:
        return int(self.bounds[s])

    def slice_of(self, local: int) -> int:
        """1-based slice of the member at local index `local`."""
        return int(np.searchsorted(self.bounds, local, side="right"))


def make_layout(ids: Sequence[str], shards: int, slices: int, seed: int) -> list[ShardLayout]:
    """Keyed-hash shards, then a seeded permutation of each shard cut into S near-equal slices."""
    owner = assign_shards(ids, shards, seed)
    layouts = []
    for k in range(shards):
        rows = np.flatnonzero(owner == k)
        rng = np.random.Generator(np.random.PCG64(derive_seed(seed, "slices", k)))
        members = rows[rng.permutation(len(rows))]
        sizes = [len(a) for a in np.array_split(np.arange(len(rows)), slices)]
        bounds = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        layouts.append(ShardLayout(members=members.astype(np.int64), bounds=bounds))
    return layouts


def num_batches(size: int, batch_size: int) -> int:
    return math.ceil(size / batch_size)


def step_offsets(layout: ShardLayout, epochs: Epochs, batch_size: int) -> np.ndarray:
    """(S+2,) first optimizer step of each step s at [s]; [S+1] is the total. [1] = 0."""
    plan = step_epochs(epochs, layout.slices)
    per_step = [plan[s - 1] * num_batches(layout.step_size(s), batch_size) for s in range(1, layout.slices + 1)]
    return np.concatenate([[0, 0], np.cumsum(per_step)]).astype(np.int64)


def epoch_order(layout: ShardLayout, seed: int, shard: int, step: int, epoch: int) -> np.ndarray:
    """The epoch's batch plan: a seeded permutation of the step's original members (local indices); batch b
    is order[b*B:(b+1)*B] before forgotten members are dropped from it."""
    rng = np.random.Generator(np.random.PCG64(derive_seed(seed, "batches", shard, step, epoch)))
    return rng.permutation(layout.step_size(step)).astype(np.int64)


def build_index(layout: ShardLayout, seed: int, shard: int, epochs: Epochs,
                batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """CSR index member -> the optimizer steps whose planned batch held it: (indptr (n_k+1,), steps (nnz,)),
    steps ascending per member. Covers all steps, recorded or not (the unrecorded ones count DPUS residue)."""
    plan = step_epochs(epochs, layout.slices)
    offsets = step_offsets(layout, plan, batch_size)
    members: list[np.ndarray] = []
    steps: list[np.ndarray] = []
    for s in range(1, layout.slices + 1):
        nb = num_batches(layout.step_size(s), batch_size)
        for e in range(plan[s - 1]):
            order = epoch_order(layout, seed, shard, s, e)
            members.append(order)
            steps.append(offsets[s] + e * nb + np.arange(len(order)) // batch_size)
    member = np.concatenate(members) if members else np.zeros(0, np.int64)
    step = np.concatenate(steps) if steps else np.zeros(0, np.int64)
    by = np.lexsort((step, member))
    counts = np.bincount(member, minlength=len(layout.members))
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return indptr, step[by].astype(np.int32)


@dataclass
class OptState:
    """Parameters and Adam state after some step: what a checkpoint theta_s holds."""

    params: torch.Tensor  # (P,) float32
    exp_avg: torch.Tensor  # (P,)
    exp_avg_sq: torch.Tensor  # (P,)
    adam_step: int  # optimizer steps taken (empty batches excluded)


def cuda_determinism() -> None:
    """Ask cuBLAS for a fixed workspace (a value the caller set is kept). torch sizes the workspace from this
    the first time cuBLAS runs in the process, and in deterministic mode refuses to run without it, so the
    engine calls this before it first touches a device (Engine.train, Engine.open), not at import."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


@contextmanager
def deterministic() -> Iterator[None]:
    """Deterministic kernels and a fixed thread count for the duration; restores the caller's settings.

    Both switches are process-wide, and a daemon enters this from two threads at once (the worker's forgets and
    the gold standard's reference retrain, engine/gold.py): the first to enter saves the settings and the last to
    leave restores them, so neither can switch determinism off under the other."""
    cuda_determinism()  # for callers that train without an Engine (the tests' reference retrains)
    with _SWITCH_LOCK:
        if not _SAVED:
            _SAVED.append((torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()))
            torch.set_num_threads(TRAIN_THREADS)
            _set_deterministic(True)
        _SAVED.append(_SAVED[0])
    try:
        yield
    finally:
        with _SWITCH_LOCK:
            _SAVED.pop()
            if len(_SAVED) == 1:
                threads, was = _SAVED.pop()
                _set_deterministic(was)
                torch.set_num_threads(threads)


_SWITCH_LOCK = threading.Lock()
_SAVED: list[tuple[int, bool]] = []  # [the settings before the first enter, then one entry per holder]


def _set_deterministic(mode: bool) -> None:
    # torch.use_deterministic_algorithms also sets torch._inductor's flag, and importing torch._inductor costs
    # ~1.3 s the first time in a process (the first forget a daemon applies). We never torch.compile, so the
    # kernel-level switch it wraps gives the same guarantee; the public call stays as the fallback.
    setter = getattr(torch._C, "_set_deterministic_algorithms", None)
    if setter is None:
        torch.use_deterministic_algorithms(mode)
    else:
        setter(mode)


# on_step(s, the state after step s): store the checkpoint theta_s.
StepCallback = Callable[[int, OptState], None]
# increments(s, rows) -> where the step's rows go, float32, float16 or int8 records (a memmap of the step's .npy
# file, or a compressed file's writer): they stream into it in chunks, so recording never holds a whole step's
# increments in memory.
IncrementSink = Callable[[int, int], IncrementRows]

_CHUNK_ROWS = 64  # increments buffered on the device between writes to the file (27 MB for the paper's Purchase MLP)


def run_steps(
    *,
    shape: MLPShape,
    layout: ShardLayout,
    X: torch.Tensor,  # (n_k, F) the shard's rows in member order, on the training device
    y: torch.Tensor,  # (n_k,) int64
    alive: np.ndarray,  # (n_k,) bool: False for forgotten members
    start: OptState,  # theta_{first-1}
    first: int,
    seed: int,
    shard: int,
    epochs: Epochs,  # E, or E_1..E_S
    batch_size: int,
    learning_rate: float,
    record_upto: int,  # record increments of steps first..record_upto (S - m)
    on_step: StepCallback,
    increments: IncrementSink | None = None,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Train steps first..S from `start`; return the samples read. Call inside `deterministic()`."""
    device = X.device
    plan = step_epochs(epochs, layout.slices)
    flat, opt = _optimizer(start, learning_rate, device)
    dropped = None if alive.all() else alive
    read = 0
    buffers = _Buffers(shape.num_params, device)
    for s in range(first, layout.slices + 1):
        nb = num_batches(layout.step_size(s), batch_size)
        recorder = None
        if s <= record_upto and increments is not None:  # a step of 0 epochs records an empty (0, P) file
            recorder = _Recorder(increments(s, plan[s - 1] * nb), plan[s - 1] * nb, buffers)
        for e in range(plan[s - 1]):
            order, cuts = _batches(layout, seed, shard, s, e, nb, batch_size, dropped)
            order_dev = torch.from_numpy(order).to(device)  # one host-to-device copy per epoch
            read += _train_epoch(shape, flat, opt, X, y, order_dev, cuts, e * nb, recorder)
            if progress is not None:
                progress(nb)
        if recorder is not None:
            recorder.finish()
        on_step(s, _state_of(flat, opt))
    return read


def _optimizer(start: OptState, learning_rate: float,
               device: torch.device) -> tuple[torch.nn.Parameter, torch.optim.Adam]:
    """The flat parameters and an Adam optimizer resumed from `start`'s moments and step count."""
    flat = torch.nn.Parameter(start.params.detach().clone().to(device))
    opt = torch.optim.Adam([flat], lr=learning_rate, foreach=False)
    opt.state[flat] = {
        "step": torch.tensor(float(start.adam_step), dtype=torch.float32),
        "exp_avg": start.exp_avg.detach().clone().to(device),
        "exp_avg_sq": start.exp_avg_sq.detach().clone().to(device),
    }
    return flat, opt


def _state_of(flat: torch.nn.Parameter, opt: torch.optim.Adam) -> OptState:
    st = opt.state[flat]
    return OptState(
        params=flat.detach().clone(),
        exp_avg=st["exp_avg"].detach().clone(),
        exp_avg_sq=st["exp_avg_sq"].detach().clone(),
        adam_step=int(st["step"].item()),
    )


def _batches(layout: ShardLayout, seed: int, shard: int, s: int, e: int, nb: int, batch_size: int,
             alive: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(order, cuts): the epoch's members in batch order, batch b being order[cuts[b]:cuts[b+1]]. With `alive`
    (some members forgotten): shrink, don't re-pack, the forgotten are dropped and every batch keeps its bounds."""
    order = epoch_order(layout, seed, shard, s, e)
    cuts = np.minimum(np.arange(0, nb + 1) * batch_size, len(order))  # the last batch may be short
    if alive is not None:
        keep = alive[order]
        order = order[keep]
        cuts = np.concatenate([[0], np.cumsum(keep)])[np.minimum(cuts, len(keep))]
    return order, cuts


class _Buffers:
    """The chunk buffers every recorded step of a run reuses: a fresh buffer per step would fault in its pages
    again each time (system time, and the same bytes)."""

    def __init__(self, num_params: int, device: torch.device) -> None:
        self.num_params, self.device = num_params, device
        self.chunks: dict[torch.dtype, torch.Tensor] = {}  # (_CHUNK_ROWS, P) on the device, by dtype

    def rows(self, n: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        if dtype not in self.chunks:
            self.chunks[dtype] = torch.empty((_CHUNK_ROWS, self.num_params), dtype=dtype, device=self.device)
        return self.chunks[dtype][:n]

    def half(self, src: torch.Tensor) -> np.ndarray:
        """`src` rounded to float16 on the host: to nearest, ties to even, as IEEE 754 converts (numpy's cast
        gives the same bits; torch's vectorised one is faster)."""
        return self.rows(len(src), torch.float16).copy_(src).cpu().numpy()


class _Recorder:
    """Streams one step's increments into its file: a chunk of float32 rows buffered on the device, written out
    whenever the optimizer moves past it, rounded (float16) or quantised (int8) on the host, then written by the
    file's writer (engine/increments_codec.py: pwrite into an .npy file, or zstd frames). Every row is set: a
    row whose batch was emptied by forgetting is zero (`empty`)."""

    def __init__(self, dst: IncrementRows, rows: int, buffers: _Buffers) -> None:
        self.out, self.rows, self.buffers = row_writer(dst), rows, buffers
        self.int8 = is_int8_rows(self.out.dtype)
        self.chunk = min(rows, _CHUNK_ROWS)
        self.buf = buffers.rows(self.chunk)  # rows base..base+chunk
        self.base = 0

    def reach(self, r: int) -> None:
        """Optimizer step r of the step is next: write the buffer out first if r lies past it."""
        if r == self.base + self.chunk:
            self._write(self.chunk)
            self.base += self.chunk

    def empty(self, r: int) -> None:
        self.buf[r - self.base].zero_()

    def finish(self) -> None:
        """Write the last rows. The callers fsync .npy files once their training is done."""
        self._write(self.rows - self.base)
        self.out.finish()

    def _write(self, n: int) -> None:
        if n == 0:
            return
        src = self.buffers.half(self.buf[:n]) if self.out.dtype == np.float16 else self.buf[:n].cpu().numpy()
        self.out.write(self.base, quantise(src) if self.int8 else src)


def _train_epoch(shape: MLPShape, flat: torch.nn.Parameter, opt: torch.optim.Adam, X: torch.Tensor,
                 y: torch.Tensor, order: torch.Tensor, cuts: np.ndarray, row0: int, recorder: _Recorder | None) -> int:
    """One epoch's optimizer steps (the hot loop: one per batch); returns the samples read. Batch b's
    increment, when recorded, is row row0 + b of the step's increments."""
    read = 0
    for b in range(len(cuts) - 1):
        if recorder is not None:
            recorder.reach(row0 + b)
        lo, hi = int(cuts[b]), int(cuts[b + 1])
        if hi == lo:  # nothing left to learn from: no optimizer step, a zero increment
            if recorder is not None:
                recorder.empty(row0 + b)
            continue
        idx = order[lo:hi]
        before = flat.detach().clone() if recorder is not None else None
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(forward(shape, flat, X[idx]), y[idx])  # (B, F) -> (B, C) -> ()
        loss.backward()
        opt.step()
        if recorder is not None and before is not None:
            torch.sub(flat.detach(), before, out=recorder.buf[row0 + b - recorder.base])
        read += hi - lo
    return read
