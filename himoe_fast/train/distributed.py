"""Multi-process training through ``torch.distributed``.

Three ways in:

* ``--gpus N``: :func:`spawn` starts N processes, one per GPU, NCCL backend, ``DistributedDataParallel``.
* ``--procs N``: the same on CPU with the gloo backend (each process gets ``cores / N`` threads).
* launched by ``torchrun`` (``RANK`` / ``WORLD_SIZE`` set): :func:`context_from_env` joins that group
  instead -- this is how it runs across nodes.

Failure handling: :func:`spawn` uses ``torch.multiprocessing.start_processes(join=True)``, which kills
the surviving ranks as soon as one exits with an error and re-raises in the parent, so a crashed rank
never leaves the others hanging in a collective (``torchrun`` does the same for its workers).
"""

from __future__ import annotations

import datetime
import logging
import os
import pickle
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist

from ..errors import SettingsError, UserInputError

#: Collective timeout. Ranks only wait on each other around per-epoch validation and checkpointing.
DEFAULT_TIMEOUT = datetime.timedelta(minutes=10)


class DistributedError(RuntimeError):
    """A rank failed, or the requested world cannot be started."""


class GpuCountError(DistributedError, SettingsError):
    """More GPUs asked for than are visible (bad input: the CLI exits with code 2)."""


@dataclass
class DistContext:
    """Where this process runs. ``world_size == 1`` means no process group is used."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1 and dist.is_available() and dist.is_initialized()

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def all_gather_object(self, obj: Any) -> list[Any]:
        if not self.distributed:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def broadcast_object(self, obj: Any) -> Any:
        if not self.distributed:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def check_gpus(n: int) -> None:
    """Raise ``DistributedError`` (one line) if fewer than ``n`` GPUs are visible."""
    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if n > visible:
        raise GpuCountError(f"--gpus {n} asked for {n} GPU(s) but {visible} {'is' if visible == 1 else 'are'} visible")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _device_for(use_cuda: bool, local_rank: int) -> torch.device:
    if use_cuda:
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def init_group(rank: int, world_size: int, use_cuda: bool, local_rank: int | None = None) -> DistContext:
    """Join (or create) the default process group and pick this rank's device."""
    local_rank = rank if local_rank is None else local_rank
    device = _device_for(use_cuda, local_rank)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo", rank=rank, world_size=world_size,
                                timeout=DEFAULT_TIMEOUT)
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def context_from_env(use_cuda: bool) -> DistContext:
    """For processes started by torchrun: read RANK / WORLD_SIZE / LOCAL_RANK and join the group."""
    rank = int(os.environ["RANK"])
    world = int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    return init_group(rank, world, use_cuda, local)


def single_process_context(use_cuda: bool) -> DistContext:
    return DistContext(device=torch.device("cuda", torch.cuda.current_device()) if use_cuda else torch.device("cpu"))


def _entry(rank: int, fn: Callable[..., Any], world_size: int, use_cuda: bool, threads: int, args: tuple,
           error_dir: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
    torch.set_num_threads(threads)
    ctx = init_group(rank, world_size, use_cuda)
    try:
        fn(ctx, *args)
        # all ranks finished: meet once more so that no rank tears the group down while another is
        # still inside a collective (gloo then aborts that rank: "terminate called without an active
        # exception", seen about once in four runs of the --procs 2 test)
        dist.barrier()
    except UserInputError as exc:
        # torch passes only the traceback text to the parent; keep the typed error so the parent can
        # report bad input (a damaged checkpoint, say) as such
        (Path(error_dir) / f"rank{rank}.pickle").write_bytes(pickle.dumps(exc))
        _record_failure(error_dir, rank, exc)
        raise
    except BaseException as exc:
        _record_failure(error_dir, rank, exc)
        raise
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _record_failure(error_dir: str, rank: int, exc: BaseException) -> None:
    """When and how this rank failed, so the parent can report the *first* failure: the others then
    fail too (a peer's closed connection), and whichever of them torch notices first is arbitrary."""
    text = f"{type(exc).__name__}: {exc}".strip().splitlines()
    (Path(error_dir) / f"rank{rank}.failed").write_text(f"{time.time():.6f}\n{text[0] if text else type(exc).__name__}")


def _first_failure(error_dir: str) -> tuple[int, str] | None:
    """(rank, one-line error) of the rank that failed first, from the ranks' records, or None."""
    found = []
    for f in Path(error_dir).glob("rank*.failed"):
        try:
            stamp, line = f.read_text().split("\n", 1)
            found.append((float(stamp), int(f.stem[4:]), line))
        except (OSError, ValueError):
            continue
    if not found:
        return None
    _, rank, line = min(found)
    return rank, line


def spawn(fn: Callable[..., Any], world_size: int, use_cuda: bool, args: tuple = ()) -> None:
    """Run ``fn(ctx, *args)`` in ``world_size`` fresh processes (rank = process index).

    ``fn`` must be a module-level function (it is pickled into the children). Raises
    :class:`DistributedError` naming the failed rank if any process fails; the others are killed.
    """
    import torch.multiprocessing as mp

    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ["MASTER_PORT"] = str(free_port())
    threads = max(1, (os.cpu_count() or 1) // world_size) if not use_cuda else max(1, torch.get_num_threads())
    # torch logs a warning for every surviving rank it terminates after a failure; the failure itself
    # is reported once, as one line, by the caller
    spawn_log = logging.getLogger("torch.multiprocessing.spawn")
    level = spawn_log.level
    spawn_log.setLevel(logging.ERROR)
    error_dir = tempfile.mkdtemp(prefix="himoe-fast-ranks-")
    try:
        mp.start_processes(_entry, args=(fn, world_size, use_cuda, threads, args, error_dir), nprocs=world_size,
                           join=True, start_method="spawn")
    except mp.ProcessRaisedException as exc:
        first = _first_failure(error_dir)
        rank = first[0] if first is not None else exc.error_index
        typed = Path(error_dir) / f"rank{rank}.pickle"
        if typed.exists():
            raise pickle.loads(typed.read_bytes()) from None      # written by our own _entry
        if first is not None:
            raise DistributedError(f"rank {rank} failed: {first[1]}") from None
        last = str(exc).strip().splitlines()
        raise DistributedError(f"rank {exc.error_index} failed: {last[-1] if last else exc}") from None
    except mp.ProcessExitedException as exc:
        raise DistributedError(f"rank {exc.error_index} exited with code {exc.exit_code}") from None
    finally:
        spawn_log.setLevel(level)
        shutil.rmtree(error_dir, ignore_errors=True)
