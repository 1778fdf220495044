"""Where and in what precision the model runs, and the random seeds that make runs repeatable.

`select_device` picks CUDA, then Apple MPS, then the CPU; `pick_dtype` picks the autocast
precision (measured on a CPU, since bf16 is several times faster on some and emulated on
others); `rng_state` / `set_rng_state` save and restore every generator with a checkpoint.
"""

from __future__ import annotations

import functools
import random
import time

import numpy as np
import torch

import config
from tatargpt.errors import UserError


def mps_available() -> bool:
    return hasattr(torch.backends, "mps") and torch.backends.mps.is_available()


def select_device(name: str = "auto") -> tuple[torch.device, str]:
    """The device to use and a sentence saying why. auto: CUDA, then Apple MPS, then CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda"), f"CUDA GPU found: {torch.cuda.get_device_name(0)}"
        if mps_available():
            return torch.device("mps"), "no CUDA GPU; Apple Silicon GPU (MPS) found"
        return torch.device("cpu"), "no CUDA GPU and no Apple MPS found"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise UserError("--device cuda was asked for, but torch sees no CUDA GPU "
                            f"(torch {torch.__version__}). Use --device auto or --device cpu.")
        return torch.device("cuda"), "asked for with --device cuda"
    if name == "mps":
        if not mps_available():
            raise UserError("--device mps was asked for, but Apple MPS is not available "
                            "(it needs Apple Silicon and macOS 12.3+). Use --device auto.")
        return torch.device("mps"), "asked for with --device mps"
    if name == "cpu":
        return torch.device("cpu"), "asked for with --device cpu"
    raise UserError(f"unknown device {name!r}: choose auto, cpu, cuda or mps")


def sync(device: torch.device) -> None:
    """Wait for the device's queued work: an accelerator runs behind the Python that feeds it,
    so a clock read without this measures only how fast the work was queued."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


# bf16 autocast on a CPU pays off only when its matmuls are clearly faster than fp32: autocast
# also casts every input and weight, and the elementwise work stays in fp32.
BF16_MIN_SPEEDUP = 1.5


@functools.cache
def cpu_bf16_speedup(n_embd: int = 512, ffn_hidden: int = 2048, rows: int = 1024) -> float:
    """How many times faster the matmuls of one transformer block run under bf16 autocast
    than in fp32 on this CPU, well under a second. Five interleaved rounds; the fastest time
    of each precision counts, as other processes can only make a round slower. Where bf16 is
    only emulated (≈0.1× fp32) one round settles it: the other four would take seconds.

    Processors differ: with AMX (Sapphire Rapids and later) bf16 is several times faster; with
    AVX512-BF16 alone it can be half as fast as fp32. The flag names do not tell, a
    measurement does. Measured once per process and shape.
    """
    g = torch.Generator().manual_seed(0)
    x = torch.randn(rows, n_embd, generator=g)
    h = torch.randn(rows, ffn_hidden, generator=g)
    weights = [(x, torch.randn(3 * n_embd, n_embd, generator=g)),  # q, k, v
               (x, torch.randn(n_embd, n_embd, generator=g)),  # attention output
               (x, torch.randn(ffn_hidden, n_embd, generator=g)),  # MLP up
               (h, torch.randn(n_embd, ffn_hidden, generator=g))]  # MLP down

    def block(bf16: bool) -> float:
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            for _ in range(3):
                for a, w in weights:
                    torch.nn.functional.linear(a, w)
        return time.perf_counter() - start

    block(False), block(True)  # warm-up: thread pool, kernel choice
    times = {False: [], True: []}
    for _ in range(5):
        for bf16 in (False, True):
            times[bf16].append(block(bf16))
        if min(times[False]) / min(times[True]) < 1 / 3:
            break  # bf16 emulated: clear at once, and every further round costs seconds
    return min(times[False]) / min(times[True])


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def pick_dtype(device: torch.device, requested: str = "auto",
               model_config: config.ModelConfig | None = None) -> tuple[torch.dtype, str]:
    """The autocast precision for `device` and a sentence saying why.

    CUDA: bf16 where the GPU computes it natively (Ampere and later), else fp16 with a
    GradScaler (a T4 reports bf16 support, but only through slow emulation). MPS: fp16 where
    this torch has autocast on MPS, else fp32. CPU: bf16 only when a short measurement at the
    model's shapes shows its matmuls at least BF16_MIN_SPEEDUP× faster than fp32.
    """
    if requested != "auto":
        if requested not in DTYPES:
            raise UserError(f"unknown dtype {requested!r}: choose auto, {', '.join(DTYPES)}")
        dtype = DTYPES[requested]
        if device.type == "cpu" and dtype == torch.float16:
            raise UserError("float16 autocast is not supported for training on CPU; "
                            "use --dtype bfloat16 or float32")
        return dtype, f"asked for with --dtype {requested}"
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported(including_emulation=False):
            return torch.bfloat16, "this GPU computes bf16 natively"
        return torch.float16, "this GPU has no native bf16: fp16 with loss scaling"
    if device.type == "mps":
        if torch.amp.is_autocast_available("mps"):
            return torch.float16, "autocast on MPS is supported by this torch"
        return torch.float32, f"notice: torch {torch.__version__} has no autocast on MPS: fp32"
    cfg = model_config or config.ModelConfig()
    speedup = cpu_bf16_speedup(cfg.n_embd, cfg.ffn_hidden)
    measured = (f"bf16 matmuls of this model's shapes ran {speedup:.2f}× as fast as fp32 "
                f"on this CPU (measured just now)")
    if speedup >= BF16_MIN_SPEEDUP:
        return torch.bfloat16, measured
    return torch.float32, f"{measured}; bf16 pays off from {BF16_MIN_SPEEDUP}×, so fp32"


def dtype_name(dtype: torch.dtype) -> str:
    return {v: k for k, v in DTYPES.items()}[dtype]


def set_seed(n: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(n)
    np.random.seed(n)
    torch.manual_seed(n)


def rng_state() -> dict:
    """Every random state, in a form `torch.load(weights_only=True)` accepts."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)),
                  "pos": int(pos), "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def set_rng_state(state: dict) -> None:
    """Restore `rng_state()`, whatever device the checkpoint was saved or loaded on.

    The generators want CPU ByteTensors; a checkpoint saved on a machine with more GPUs than
    this one has more CUDA states than there are GPUs: only the first ones are restored.
    """
    random.setstate(_as_tuple(state["python"]))
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].cpu().numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"].cpu())
    cuda = [s.cpu() for s in state.get("cuda") or []]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])


def _as_tuple(x):
    return tuple(_as_tuple(i) for i in x) if isinstance(x, (list, tuple)) else x

